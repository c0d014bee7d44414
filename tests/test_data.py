"""Data layer: unit split, train-only scaling, windows/labels, benchmark labels, Azure events, errors."""
from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest

from ddrsa.config import DataConfig, ExperimentConfig
from ddrsa.data import PreparedData, SurvivalWindows, load_dataset
from ddrsa.data import synthetic
from ddrsa.data.windows import make_windows, run_to_failure_labels
from ddrsa.errors import DataError
from ddrsa.settings import Settings
from tests.conftest import real_data_file

real_cmapss = real_azure = pytest.mark.realdata  # tests/conftest.py: skipped when absent, failed in CI


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def _units_disjoint(d: PreparedData):
    sets = [set(np.unique(w.unit)) for w in (d.train, d.val, d.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert [len(s) for s in sets] == [d.n_units[k] for k in ("train", "val", "test")]


# ------------------------------------------------------------------------------ windows
def test_windows_padding_mask_and_labels():
    feat = np.arange(10, dtype=np.float32).reshape(5, 2) + 1        # T=5, F=2, no zeros
    ev, ce, ru = run_to_failure_labels(5, pred_horizon=3)
    w = make_windows([7], [feat], [ev], [ce], [ru], lookback=3)
    assert len(w) == 5 and w.x.shape == (5, 3, 2) and w.x.dtype == np.float32
    assert w.event_index.tolist() == [4, 3, 2, 1, 0]
    assert w.censored.tolist() == [True, True, False, False, False]
    assert w.rul.tolist() == [4, 3, 2, 1, 0] and w.unit.tolist() == [7] * 5
    assert w.mask[0].tolist() == [False, False, True] and w.mask[1].tolist() == [False, True, True]
    assert w.mask[2:].all()
    np.testing.assert_array_equal(w.x[0], [[0, 0], [0, 0], feat[0]])
    np.testing.assert_array_equal(w.x[4], feat[2:5])
    xb, mb = w.batch([4, 0])
    np.testing.assert_array_equal(xb[0], feat[2:5]) and np.testing.assert_array_equal(mb[1], w.mask[0])
    s = make_windows([7], [feat], [ev], [ce], [ru], lookback=3, stride=2)
    assert s.event_index.tolist() == [4, 2, 0]                      # last window always kept
    sub = w.subset([1, 3])
    assert len(sub) == 2 and sub.event_index.tolist() == [3, 1]
    np.testing.assert_array_equal(sub.x, w.x[[1, 3]])
    dense = SurvivalWindows(x=w.x, mask=w.mask, event_index=w.event_index, censored=w.censored,
                            rul=w.rul, unit=w.unit)
    np.testing.assert_array_equal(dense.x, w.x) and np.testing.assert_array_equal(dense.mask, w.mask)
    with pytest.raises(ValueError):
        w.event_index[0] = 1                                         # shared cache: read-only


def test_two_units_do_not_mix():
    a, b = np.ones((2, 1), np.float32), 2 * np.ones((4, 1), np.float32)
    la, lb = run_to_failure_labels(2, 10), run_to_failure_labels(4, 10)
    w = make_windows([1, 2], [a, b], [la[0], lb[0]], [la[1], lb[1]], [la[2], lb[2]], lookback=3)
    first_b = w.x[w.unit == 2][0]
    np.testing.assert_array_equal(first_b[:, 0], [0, 0, 2])           # b's padding, not a's rows


# ------------------------------------------------------------------------------ synthetic C-MAPSS
def test_synthetic_split_scaling_and_signal():
    d = load_dataset(DataConfig(data_source="synthetic", lookback_window=32, pred_horizon=32))
    assert d.data_source == "synthetic" and len(d.data_version) == 16
    _units_disjoint(d)
    real = d.train.data[d.train.valid]
    np.testing.assert_allclose(real.min(0), -1, atol=1e-6)
    np.testing.assert_allclose(real.max(0), 1, atol=1e-6)
    last = d.train.x[:, -1, :]                                       # latest step of each window
    corr = [abs(np.corrcoef(last[:, f], d.train.rul)[0, 1]) for f in range(last.shape[1])]
    assert max(corr) > 0.5, corr                                     # drift tracks remaining life
    assert d.benchmark is not None and len(d.benchmark) == 30
    assert load_dataset(DataConfig(data_source="synthetic", lookback_window=32, pred_horizon=32)) is d


def test_synthetic_fd002_six_conditions():
    d = load_dataset(DataConfig(subset="FD002", data_source="synthetic", window_stride=8))
    assert d.info["n_conditions"] == 6


def test_train_scaling_ignores_test_units(tmp_path):
    synthetic.write_synthetic_cmapss(tmp_path / "cmapss", "FD001", n_units=12, seed=3)
    s = Settings(data_dir=tmp_path, data_source="real")
    cfg = DataConfig(lookback_window=16, pred_horizon=16)
    d1 = load_dataset(cfg, s)
    assert d1.data_source == "real"
    _units_disjoint(d1)
    held_out = set(d1.info["split_units"]["test"]) | set(d1.info["split_units"]["val"])
    path = tmp_path / "cmapss" / "train_FD001.txt"
    rows = np.loadtxt(path)
    hit = np.isin(rows[:, 0], list(held_out))
    rows[hit, 5:] *= 1.5
    synthetic.write_cmapss_text(pd.DataFrame(rows), path)
    d2 = load_dataset(cfg, s)
    assert d2 is not d1 and d2.data_version != d1.data_version
    np.testing.assert_array_equal(d1.train.data, d2.train.data)
    assert not np.array_equal(d1.test.data, d2.test.data)


def test_phm08_train_txt_fallback(tmp_path):
    folder = tmp_path / "cmapss"
    synthetic.write_synthetic_cmapss(folder, "FD001", n_units=6)
    (folder / "train_FD001.txt").rename(folder / "train.txt")
    (folder / "test_FD001.txt").unlink(), (folder / "RUL_FD001.txt").unlink()
    d = load_dataset(DataConfig(lookback_window=8), Settings(data_dir=tmp_path, data_source="real"))
    assert d.data_source == "real" and d.benchmark is None


# ------------------------------------------------------------------------------ real C-MAPSS
@real_cmapss
def test_real_fd001_split_and_benchmark_labels():
    d = load_dataset(ExperimentConfig(subset="FD001", data_source="real", window_stride=4))
    assert d.data_source == "real" and d.n_units == {"train": 49, "val": 21, "test": 30}
    _units_disjoint(d)
    assert len(d.feature_names) == 14
    truth = np.loadtxt(real_data_file("cmapss/RUL_FD001.txt"))
    b = d.benchmark
    assert len(b) == 100 and b.unit.tolist() == list(range(1, 101))
    np.testing.assert_array_equal(b.rul, truth)
    np.testing.assert_array_equal(b.event_index, truth.astype(int))
    np.testing.assert_array_equal(b.censored, truth >= 64)
    assert b.mask[:, -1].all()
    # training units are run to failure: every unit's last window has l = 0 and is uncensored
    for w in (d.train, d.val, d.test):
        assert (w.event_index >= 0).all()
        np.testing.assert_array_equal(w.censored, w.event_index >= 64)
        assert ((w.event_index == 0) & ~w.censored).sum() == len(np.unique(w.unit))


@real_cmapss
def test_real_fd002_six_conditions():
    d = load_dataset(DataConfig(subset="FD002", data_source="real", window_stride=16, max_units=60))
    assert d.info["n_conditions"] == 6 and len(d.feature_names) == 14
    _units_disjoint(d)


# ------------------------------------------------------------------------------ Azure PM
@real_azure
def test_azure_real_files_with_generated_telemetry():
    d = _quiet(load_dataset, DataConfig(dataset="azure_pm", data_source="auto"))
    assert d.data_source == "real+synthetic-telemetry"
    _units_disjoint(d)
    assert d.info["n_events"] == 719
    fail = pd.read_csv(real_data_file("azure_pm/PdM_failures.csv"), parse_dates=["datetime"])
    step = (fail.datetime - pd.Timestamp("2015-01-01 06:00")) // pd.Timedelta(hours=15)
    expected = fail.assign(step=step)[["machineID", "step"]].drop_duplicates().shape[0]
    assert d.info["n_event_steps"] == expected
    n_event_windows = sum(int(((w.event_index == 0) & ~w.censored).sum()) for w in (d.train, d.val, d.test))
    assert n_event_windows == expected                                # no event lost by down-sampling
    last_fail = fail.assign(step=step).groupby("machineID").step.max()
    for w in (d.train, d.val, d.test):
        assert (w.event_index[~w.censored] < 64).all()
        for m in np.unique(w.unit)[:10]:
            sel = w.unit == m
            j = np.arange(sel.sum())
            after = j > last_fail.get(m, -1)
            assert w.censored[sel][after].all()
            np.testing.assert_array_equal(w.event_index[sel][after], sel.sum() - 1 - j[after])
            fs = np.sort(step[fail.machineID == m].unique())
            nxt = fs[np.searchsorted(fs, j[~after])] if len(fs) else j[:0]
            np.testing.assert_array_equal(w.event_index[sel][~after], nxt - j[~after])
            np.testing.assert_array_equal(w.censored[sel][~after], nxt - j[~after] >= 64)
    real = d.train.data[d.train.valid]
    assert real.min() >= -1 - 1e-6 and real.max() <= 1 + 1e-6


def test_azure_synthetic_fast():
    d = load_dataset(DataConfig(dataset="azure_pm", data_source="synthetic", lookback_window=32))
    assert d.data_source == "synthetic" and len(d.feature_names) == 18
    _units_disjoint(d)
    assert d.info["n_event_steps"] > 50 and ((d.train.event_index == 0) & ~d.train.censored).any()


# ------------------------------------------------------------------------------ sources and errors
def test_auto_falls_back_to_synthetic_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="SYNTHETIC DATA"):
        d = load_dataset(DataConfig(lookback_window=8), Settings(data_dir=tmp_path, data_source="auto"))
    assert d.data_source == "synthetic"
    with pytest.warns(UserWarning, match="SYNTHETIC DATA"):          # also on a cache hit
        load_dataset(DataConfig(lookback_window=8), Settings(data_dir=tmp_path, data_source="auto"))


def test_real_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match=r"train_FD003\.txt.*cmapss.*DDRSA_DATA_DIR"):
        load_dataset(DataConfig(subset="FD003", data_source="real"), Settings(data_dir=tmp_path))
    with pytest.raises(DataError, match=r"PdM_errors\.csv.*azure_pm"):
        load_dataset(DataConfig(dataset="azure_pm", data_source="real"), Settings(data_dir=tmp_path))


def _bad_cmapss(tmp_path, edit):
    folder = tmp_path / "cmapss"
    synthetic.write_synthetic_cmapss(folder, "FD001", n_units=5)
    p = folder / "train_FD001.txt"
    lines = p.read_text().splitlines()
    edit(lines)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as exc:
        load_dataset(DataConfig(lookback_window=8), Settings(data_dir=tmp_path, data_source="real"))
    msg = str(exc.value)
    assert "\n" not in msg and "train_FD001.txt" in msg
    return msg, len(lines)


def test_truncated_last_line(tmp_path):
    def cut(lines):
        lines[-1] = " ".join(lines[-1].split()[:13])
    msg, n = _bad_cmapss(tmp_path, cut)
    assert f"line {n}" in msg and "expected 26" in msg


def test_non_numeric_value(tmp_path):
    def bad(lines):
        f = lines[9].split()
        f[7] = "abc"
        lines[9] = " ".join(f)
    msg, _ = _bad_cmapss(tmp_path, bad)
    assert "line 10" in msg and "'abc'" in msg


def test_gz_file_read_and_missing_column(tmp_path):
    folder = tmp_path / "azure_pm"
    folder.mkdir()
    tables = synthetic.make_synthetic_azure(n_machines=4)
    for name, df in tables.items():
        if name == "telemetry":
            continue
        if name == "failures":
            df = df.rename(columns={"failure": "comp"})
        with gzip.open(folder / f"PdM_{name}.csv.gz", "wt") as fh:
            df.to_csv(fh, index=False)
    with pytest.raises(DataError, match=r"PdM_failures\.csv\.gz: missing column\(s\) failure"):
        load_dataset(DataConfig(dataset="azure_pm", data_source="auto"), Settings(data_dir=tmp_path))
    for name in ("failures", "telemetry"):                            # now all 5 files, real path
        with gzip.open(folder / f"PdM_{name}.csv.gz", "wt") as fh:
            tables[name].to_csv(fh, index=False)
    d = load_dataset(DataConfig(dataset="azure_pm", data_source="real", lookback_window=16),
                     Settings(data_dir=tmp_path))
    assert d.data_source == "real" and sum(d.n_units.values()) == 4
    n_ev = tables["failures"][["machineID", "datetime"]].drop_duplicates().shape[0]
    assert d.info["n_events"] == n_ev


def test_csv_non_numeric_and_truncated(tmp_path):
    folder = tmp_path / "azure_pm"
    folder.mkdir()
    tables = synthetic.make_synthetic_azure(n_machines=4)
    for name, df in tables.items():
        df.to_csv(folder / f"PdM_{name}.csv", index=False)
    m = folder / "PdM_machines.csv"
    m.write_text(m.read_text().replace("\n2,", "\nx2,", 1))
    with pytest.raises(DataError, match=r"PdM_machines\.csv: line 3, column machineID: non-numeric value 'x2'"):
        load_dataset(DataConfig(dataset="azure_pm", data_source="real"), Settings(data_dir=tmp_path))
    tables["machines"].to_csv(m, index=False)
    e = folder / "PdM_errors.csv"
    text = e.read_text().rstrip("\n")
    e.write_text(text[: text.rfind(",")])                            # last line loses its last field
    with pytest.raises(DataError, match=r"PdM_errors\.csv: line \d+, column errorID: missing value"):
        load_dataset(DataConfig(dataset="azure_pm", data_source="real"), Settings(data_dir=tmp_path))
