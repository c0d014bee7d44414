"""Data layer: unit split, train-only scaling, windows/labels, benchmark labels, Azure events, errors."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest

from ddrsa.config import DataConfig, ExperimentConfig
from ddrsa.data import PreparedData, SurvivalWindows, clear_cache, load_dataset, synthetic
from ddrsa.data.windows import make_windows, run_to_failure_labels
from ddrsa.errors import DataError
from ddrsa.settings import Settings
from tests.conftest import REAL_DATA_DIR, real_data_file

real_cmapss = real_azure = pytest.mark.realdata  # tests/conftest.py: skipped when absent, failed in CI


def _units_disjoint(d: PreparedData):
    sets = [set(np.unique(w.unit)) for w in (d.train, d.val, d.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert [len(s) for s in sets] == [d.n_units[k] for k in ("train", "val", "test")]


# ------------------------------------------------------------------------------ windows
def test_windows_padding_mask_and_labels():
    feat = np.arange(10, dtype=np.float32).reshape(5, 2) + 1  # T=5, F=2, no zeros
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
    np.testing.assert_array_equal(xb[0], feat[2:5])
    np.testing.assert_array_equal(mb[1], w.mask[0])
    np.testing.assert_array_equal(mb[0], [True, True, True])
    s = make_windows([7], [feat], [ev], [ce], [ru], lookback=3, stride=2)
    assert s.event_index.tolist() == [4, 2, 0]  # last window always kept
    sub = w.subset([1, 3])
    assert len(sub) == 2 and sub.event_index.tolist() == [3, 1]
    np.testing.assert_array_equal(sub.x, w.x[[1, 3]])
    dense = SurvivalWindows(x=w.x, mask=w.mask, event_index=w.event_index, censored=w.censored, rul=w.rul, unit=w.unit)
    np.testing.assert_array_equal(dense.x, w.x)
    np.testing.assert_array_equal(dense.mask, w.mask)
    with pytest.raises(ValueError):
        w.event_index[0] = 1  # shared cache: read-only


def test_two_units_do_not_mix():
    a, b = np.ones((2, 1), np.float32), 2 * np.ones((4, 1), np.float32)
    la, lb = run_to_failure_labels(2, 10), run_to_failure_labels(4, 10)
    w = make_windows([1, 2], [a, b], [la[0], lb[0]], [la[1], lb[1]], [la[2], lb[2]], lookback=3)
    first_b = w.x[w.unit == 2][0]
    np.testing.assert_array_equal(first_b[:, 0], [0, 0, 2])  # b's padding, not a's rows


# ------------------------------------------------------------------------------ synthetic C-MAPSS
def test_synthetic_split_scaling_and_signal():
    d = load_dataset(DataConfig(data_source="synthetic", lookback_window=32, pred_horizon=32))
    assert d.data_source == "synthetic" and len(d.data_version) == 16
    _units_disjoint(d)
    real = d.train.data[d.train.valid]
    np.testing.assert_allclose(real.min(0), -1, atol=1e-6)
    np.testing.assert_allclose(real.max(0), 1, atol=1e-6)
    last = d.train.x[:, -1, :]  # latest step of each window
    corr = [abs(np.corrcoef(last[:, f], d.train.rul)[0, 1]) for f in range(last.shape[1])]
    assert max(corr) > 0.5, corr  # drift tracks remaining life
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
def test_azure_real_files_without_telemetry_use_real_signals_only():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # real data: no SYNTHETIC warning
        d = load_dataset(
            DataConfig(dataset="azure_pm", data_source="auto"), Settings(data_dir=REAL_DATA_DIR, data_source="auto")
        )
    assert d.data_source == "real-no-telemetry"
    assert d.feature_names == [f"error{i}" for i in range(1, 6)] + [f"days_since_comp{i}" for i in range(1, 5)] + [
        f"model{i}" for i in range(1, 5)
    ] + ["age"]
    assert d.train.n_features == 14
    _units_disjoint(d)
    assert d.info["n_events"] == 719
    fail = pd.read_csv(real_data_file("azure_pm/PdM_failures.csv"), parse_dates=["datetime"])
    step = (fail.datetime - pd.Timestamp("2015-01-01 06:00")) // pd.Timedelta(hours=15)
    expected = fail.assign(step=step)[["machineID", "step"]].drop_duplicates().shape[0]
    assert d.info["n_event_steps"] == expected
    n_event_windows = sum(int(((w.event_index == 0) & ~w.censored).sum()) for w in (d.train, d.val, d.test))
    assert n_event_windows == expected  # no event lost by down-sampling
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


# ------------------------------------------------------------------------------ Azure PM: no generated data
def _all_arrays(d: PreparedData) -> dict:
    """Every array of every split, as bytes (for byte-for-byte comparisons)."""
    return {
        f"{part}.{name}": getattr(getattr(d, part), name).tobytes()
        for part in ("train", "val", "test")
        for name in ("data", "valid", "end", "event_index", "censored", "rul", "unit")
    }


def _shift_every_generator_seed(monkeypatch, offset: int = 1009) -> None:
    """Every seeded generator changes: the synthetic module's numpy default_rng seeds (all its
    generators), the loader's synthetic parameters, numpy's and torch's global seeds."""
    import types

    import torch

    from ddrsa.data import loader

    real_rng = np.random.default_rng
    rnd = types.SimpleNamespace(**{k: getattr(np.random, k) for k in dir(np.random) if not k.startswith("__")})
    rnd.default_rng = lambda seed=None, *a, **kw: real_rng(None if seed is None else seed + offset, *a, **kw)
    shifted_np = types.ModuleType("numpy_with_shifted_seeds")
    shifted_np.__dict__.update(np.__dict__)
    shifted_np.random = rnd
    monkeypatch.setattr(synthetic, "np", shifted_np)
    monkeypatch.setattr(loader, "SYNTH_AZURE", {**loader.SYNTH_AZURE, "seed": loader.SYNTH_AZURE["seed"] + offset})
    monkeypatch.setattr(loader, "SYNTH_CMAPSS", {**loader.SYNTH_CMAPSS, "seed": loader.SYNTH_CMAPSS["seed"] + offset})
    np.random.seed(offset)
    torch.manual_seed(offset)
    clear_cache()


def _assert_seed_independent(monkeypatch, settings: Settings, cfg: DataConfig) -> PreparedData:
    clear_cache()
    before = load_dataset(cfg, settings)
    synth_cfg = DataConfig(dataset="azure_pm", data_source="synthetic", lookback_window=8, max_units=6)
    synth_before = _all_arrays(load_dataset(synth_cfg))
    arrays = _all_arrays(before)
    _shift_every_generator_seed(monkeypatch)
    try:
        after = load_dataset(cfg, settings)
        assert after is not before  # really reloaded
        assert _all_arrays(after) == arrays  # byte for byte
        assert after.data_version == before.data_version and after.data_source == before.data_source
        # the seed shift is effective: the generated data set does change under it
        assert _all_arrays(load_dataset(synth_cfg)) != synth_before
    finally:
        monkeypatch.undo()
        clear_cache()
    return before


@real_azure
def test_azure_real_features_do_not_depend_on_any_generator_seed(monkeypatch):
    d = _assert_seed_independent(
        monkeypatch,
        Settings(data_dir=REAL_DATA_DIR, data_source="real"),
        DataConfig(dataset="azure_pm", data_source="real", lookback_window=32),
    )
    assert d.data_source == "real-no-telemetry"


T0 = pd.Timestamp("2015-01-01 06:00:00")


def _hour(h: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=h)


def _fake_azure(
    folder, *, after_failure_records: bool = True, telemetry: bool = False, held_out_errors: tuple = ()
) -> dict:
    """Small Azure CSVs: 6 machines, 30 days of logs from T0 (steps of 15 h). Machine 1 fails at hour
    155 = step 10 + 5 h (comp1 and comp2 at one timestamp: one event), error1 2 h before it, error2 3 h
    after it (same step), error3 at hour 166 (step 11). With `telemetry`, hourly readings of 100 with
    volt 1000 in hours 156-164 (after the failure, same step) on machine 1.
    `after_failure_records` False leaves out the error2 / volt records after the failure."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(range(1, 7))
    machines = pd.DataFrame(
        {
            "machineID": ids,
            "model": ["model1", "model2", "model3", "model4", "model1", "model2"],
            "age": [3, 7, 11, 0, 20, 5],
        }
    )
    errors = [(_hour(0), m, "error4") for m in ids] + [(_hour(719), m, "error5") for m in ids]  # log period
    errors += [(_hour(40 + 50 * m), m, "error2") for m in ids] + list(held_out_errors)
    errors += [(_hour(153), 1, "error1"), (_hour(166), 1, "error3")]
    if after_failure_records:
        errors.append((_hour(158), 1, "error2"))
    failures = [
        (_hour(155), 1, "comp1"),
        (_hour(155), 1, "comp2"),
        (_hour(400), 2, "comp3"),
        (_hour(300), 3, "comp4"),
        (_hour(500), 5, "comp1"),
    ]
    maint = [(pd.Timestamp("2014-12-01 06:00"), m, c) for m in ids for c in ("comp1", "comp2", "comp3", "comp4")]
    maint += [(_hour(155), 1, "comp1"), (_hour(155), 1, "comp2"), (_hour(400), 2, "comp3")]
    tables = {
        "machines": machines,
        "errors": pd.DataFrame(errors, columns=["datetime", "machineID", "errorID"]),
        "failures": pd.DataFrame(failures, columns=["datetime", "machineID", "failure"]),
        "maint": pd.DataFrame(maint, columns=["datetime", "machineID", "comp"]),
    }
    if telemetry:
        hours = pd.date_range(_hour(0), _hour(719), freq="h")
        tel = pd.concat(
            [
                pd.DataFrame(
                    {
                        "datetime": hours,
                        "machineID": m,
                        "volt": 100.0,
                        "rotate": 400.0 + m,
                        "pressure": 100.0,
                        "vibration": 40.0,
                    }
                )
                for m in ids
            ],
            ignore_index=True,
        )
        if after_failure_records:
            hit = (tel.machineID == 1) & (tel.datetime > _hour(155)) & (tel.datetime <= _hour(164))
            tel.loc[hit, "volt"] = 1000.0
        tables["telemetry"] = tel
    for name, df in tables.items():
        df.to_csv(folder / f"PdM_{name}.csv", index=False)
    return tables


def _windows_of(d: PreparedData, unit: int):
    """(split name, windows) holding `unit`."""
    for part in ("train", "val", "test"):
        w = getattr(d, part)
        if (w.unit == unit).any():
            return part, w
    raise AssertionError(f"unit {unit} in no split")


@pytest.mark.parametrize("telemetry", [False, True], ids=["no-telemetry", "telemetry"])
def test_azure_lag0_window_does_not_see_hours_after_a_mid_step_failure(tmp_path, telemetry):
    from ddrsa.data.azure_pm import machine_steps, observation_period

    tables = _fake_azure(tmp_path / "leaky" / "azure_pm", telemetry=telemetry)
    _fake_azure(tmp_path / "clean" / "azure_pm", telemetry=telemetry, after_failure_records=False)
    cfg = DataConfig(dataset="azure_pm", data_source="real", lookback_window=4, pred_horizon=16)
    leaky = load_dataset(cfg, Settings(data_dir=tmp_path / "leaky"))
    clean = load_dataset(cfg, Settings(data_dir=tmp_path / "clean"))
    assert leaky.data_source == ("real" if telemetry else "real-no-telemetry")
    assert leaky.info["n_events"] == 4 and leaky.info["n_event_steps"] == 4  # comp1+comp2 at 155: one event
    # the records after the failure inside its step reach no feature of any window
    assert _all_arrays(leaky) == _all_arrays(clean)
    # the lag-0 window of machine 1 ends at step 10 (hours 150-164, failure at hour 155)
    _, w = _windows_of(leaky, 1)
    lag0 = np.flatnonzero((w.unit == 1) & (w.event_index == 0) & ~w.censored)
    assert len(lag0) == 1
    rows = w.row_index(lag0)[0]
    first_row = int(w.end[w.unit == 1].min())  # row of step 0 of machine 1
    assert rows[-1] - first_row == 10
    # unscaled, independently of the loader: step 10 counts error1 (hour 153), not error2 (hour 158);
    # error3 (hour 166) is in step 11; the replacement at the failure shows from step 11 on
    names = leaky.feature_names
    g = {k: v[v.machineID == 1] for k, v in tables.items() if k != "machines"}
    raw, ev_steps = machine_steps(
        g["errors"],
        g["maint"],
        g["failures"],
        tables["machines"].iloc[0],
        15,
        pd.Timestamp("2014-12-01 06:00"),
        tel=g.get("telemetry"),
        period=None if telemetry else observation_period(tables),
    )
    assert ev_steps.tolist() == [10] and raw.shape == (48, len(names))
    col = {n: i for i, n in enumerate(names)}
    assert raw[10, col["error1"]] == 1 and raw[10, col["error2"]] == 0 and raw[11, col["error3"]] == 1
    assert raw[:, col["error2"]].sum() == 1  # only the hour-90 error2 of machine 1
    assert raw[10, col["days_since_comp1"]] > 30 and raw[11, col["days_since_comp1"]] == pytest.approx(10 / 24)
    if telemetry:
        assert raw[10, col["volt"]] == 100.0 and (raw[:, col["volt"]] == 100.0).all()
    # and the lag-0 window's last row is that row scaled with the train machines' min/max
    train_raw = []
    for m in leaky.info["split_units"]["train"]:
        gm = {k: v[v.machineID == m] for k, v in tables.items() if k != "machines"}
        train_raw.append(
            machine_steps(
                gm["errors"],
                gm["maint"],
                gm["failures"],
                tables["machines"].set_index("machineID", drop=False).loc[m],
                15,
                pd.Timestamp("2014-12-01 06:00"),
                tel=gm.get("telemetry"),
                period=None if telemetry else observation_period(tables),
            )[0]
        )
    lo, hi = np.concatenate(train_raw).min(0), np.concatenate(train_raw).max(0)
    expected = 2 * (raw[10] - lo) / np.where(hi > lo, hi - lo, 1) - 1
    np.testing.assert_allclose(w.data[rows[-1]], expected, rtol=1e-6, atol=1e-6)
    assert w.valid[rows].all()


def test_azure_fake_files_do_not_depend_on_any_generator_seed(tmp_path, monkeypatch):
    _fake_azure(tmp_path / "azure_pm")
    d = _assert_seed_independent(
        monkeypatch,
        Settings(data_dir=tmp_path, data_source="real"),
        DataConfig(dataset="azure_pm", data_source="real", lookback_window=4),
    )
    assert d.data_source == "real-no-telemetry" and d.train.n_features == 14


def test_azure_split_by_machine_and_scaler_fit_on_train_machines_only(tmp_path):
    _fake_azure(tmp_path / "a" / "azure_pm")
    cfg = DataConfig(dataset="azure_pm", data_source="real", lookback_window=4)
    d1 = load_dataset(cfg, Settings(data_dir=tmp_path / "a"))
    _units_disjoint(d1)
    held_out = d1.info["split_units"]["test"] + d1.info["split_units"]["val"]
    burst = tuple((_hour(200 + k), m, "error1") for m in held_out for k in range(6))  # 6 errors in one step
    _fake_azure(tmp_path / "b" / "azure_pm", held_out_errors=burst)
    d2 = load_dataset(cfg, Settings(data_dir=tmp_path / "b"))
    assert d2.info["split_units"] == d1.info["split_units"]
    assert d2.train.data.tobytes() == d1.train.data.tobytes()  # scaler saw no held-out machine
    assert d2.test.data.tobytes() != d1.test.data.tobytes()
    assert d2.test.data.max() > 1.0 or d2.val.data.max() > 1.0  # held-out burst beyond the train range


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
    with pytest.warns(UserWarning, match="SYNTHETIC DATA"):  # also on a cache hit
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
    for name in ("failures", "telemetry"):  # now all 5 files, real path
        with gzip.open(folder / f"PdM_{name}.csv.gz", "wt") as fh:
            tables[name].to_csv(fh, index=False)
    d = load_dataset(
        DataConfig(dataset="azure_pm", data_source="real", lookback_window=16), Settings(data_dir=tmp_path)
    )
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
    e.write_text(text[: text.rfind(",")])  # last line loses its last field
    with pytest.raises(DataError, match=r"PdM_errors\.csv: line \d+, column errorID: missing value"):
        load_dataset(DataConfig(dataset="azure_pm", data_source="real"), Settings(data_dir=tmp_path))
