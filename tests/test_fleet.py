"""Fleet tables (docs/DATA.md): validation at the door, encoding, imputation, split, labels, caching."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ddrsa.cli import run_cli
from ddrsa.config import DataConfig, ExperimentConfig, dataset_name
from ddrsa.data import clear_cache, load_dataset
from ddrsa.data.__main__ import PROG, main
from ddrsa.data.fleet_table import MAX_MISSING_SHARE, columns_for, read_fleet
from ddrsa.errors import DataError
from ddrsa.sweep.spec import SweepSpec, expand
from tests.conftest import ROOT
from tests.fleet_fixtures import make_fleet


def _write(df: pd.DataFrame, path):
    if str(path).endswith(".parquet"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)
    return path


def _check(path, capsys, *flags):
    """(exit code, stdout, stderr) of `python -m ddrsa.data check` run in-process."""
    try:
        code = run_cli(PROG, main, ["check", str(path), *flags])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------ bad input
def _bad_cases():
    df, _ = make_fleet(6, 40)

    def dup(d):
        return pd.concat([d, d.iloc[[5]]]).sort_values(["unit", "time"], kind="stable")

    def backwards(d):
        d = d.copy()
        i = d.index[(d.unit == 2) & (d.time == 10)][0]
        d.loc[i, "time"] = 100  # then 11..39 come after 100: time goes back
        return d

    def nan_share(d):
        d = d.copy()
        d.loc[d.index[: int(len(d) * (MAX_MISSING_SHARE + 0.1))], "temp"] = np.inf
        return d

    return {
        "missing required column": (df.drop(columns="event"), "missing required column(s) event"),
        "non-numeric covariate": (df.assign(serial=[f"s{i}" for i in range(len(df))]), "one-hot limit"),
        "duplicate rows": (dup(df), "duplicate (unit, time)"),
        "time backwards": (backwards(df), "time goes backwards inside unit '2'"),
        "event not 0/1": (df.assign(event=df.event.where(df.index != 7, 2)), "is not 0 or 1"),
        "no failure": (df.assign(event=0), "no failure at all"),
        "too few units": (df[df.unit <= 2], "needs at least 3"),
        "missing beyond share": (nan_share(df), "'temp' is missing or infinite on 60%"),
        "time not integer": (df.assign(time=df.time + 0.5), "is not an integer step"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_table_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    df, expected = _bad_cases()[case]
    path = _write(df, tmp_path / "fleet.csv")
    before = sorted(os.listdir(tmp_path))
    code, out, err = _check(path, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err, err
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    "content,expected",
    [
        (b"", "empty file"),
        (b"unit,time,event,x\n", "no rows"),
        (b"\x1f\x8b\x08garbage", "cannot read"),
        (b"PAR1 this is not parquet", "not a Parquet file"),
    ],
)
def test_unreadable_or_empty_file(content, expected, tmp_path, capsys):
    name = "fleet.parquet" if b"PAR1" in content else ("fleet.csv.gz" if content.startswith(b"\x1f") else "fleet.csv")
    path = tmp_path / name
    path.write_bytes(content)
    code, _, err = _check(path, capsys)
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    code, _, err = _check(tmp_path / "absent.csv", capsys)
    assert code == 2 and "no such file" in err


def test_check_cli_subprocess_prints_the_summary(tmp_path):
    df, _ = make_fleet(12, 60)
    path = _write(df, tmp_path / "pumps.parquet")
    r = subprocess.run(
        [sys.executable, "-m", "ddrsa.data", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    n_fail = int(df.event.sum())
    censored = int(sum(g.event.iloc[-1] == 0 for _, g in df.groupby("unit")))
    assert "units 12" in r.stdout and f"failures {n_fail}, censored {censored}" in r.stdout
    assert f"segments {n_fail + censored}" in r.stdout
    assert "const (constant on the training units)" in r.stdout and "site=a, site=b" in r.stdout
    assert "suggested: --pred-horizon" in r.stdout


# ------------------------------------------------------------------------------ reading rules
def test_column_names_from_flags_or_yaml(tmp_path, capsys):
    df, _ = make_fleet(6, 40)
    df = df.rename(columns={"unit": "pump", "time": "hour", "event": "failed"})
    path = _write(df, tmp_path / "pumps.csv")
    assert _check(path, capsys)[0] == 2
    code, out, _ = _check(path, capsys, "--unit-column", "pump", "--time-column", "hour", "--event-column", "failed")
    assert code == 0 and "units 6" in out
    (tmp_path / "pumps.yaml").write_text("unit_column: pump\ntime_column: hour\nevent_column: failed\n")
    assert _check(path, capsys)[0] == 0
    assert columns_for(path).unit_column == "pump"


def test_timestamps_need_a_step_and_rows_in_one_step_are_averaged(tmp_path):
    df = pd.DataFrame(
        {
            "unit": ["a"] * 4 + ["b"] * 3,
            "time": [
                "2025-01-01 00:00",
                "2025-01-01 00:30",
                "2025-01-01 01:10",
                "2025-01-01 03:00",
                "2025-01-02 00:00",
                "2025-01-02 01:00",
                "2025-01-02 02:00",
            ],
            "event": [0, 0, 1, 0, 0, 0, 1],
            "x": [1.0, 3.0, 5.0, 7.0, 1.0, 2.0, 3.0],
        }
    )
    path = _write(df, tmp_path / "ts.csv")
    with pytest.raises(DataError, match="time_step"):
        read_fleet(path)
    t = read_fleet(path, columns_for(path, time_step="1h"))
    assert [lab for lab in t.unit_labels] == ["a", "b"] and t.unit_ids.tolist() == [1, 2]
    a = t.steps[0][:, 0]  # steps 0: mean(1, 3); 1: 5; 2: missing; 3: 7
    assert a[:2].tolist() == [2.0, 5.0] and np.isnan(a[2]) and a[3] == 7.0
    assert t.event_steps[0].tolist() == [1] and t.event_steps[1].tolist() == [2]


def test_categorical_one_hot_and_imputation_rule(tmp_path):
    df, _ = make_fleet(9, 30, seed=3)
    df.loc[df.index[df.unit == 1][3:6], "temp"] = np.nan  # inside: last observed value
    df.loc[df.index[df.unit == 2][:4], "temp"] = np.nan  # leading: training median
    path = _write(df, tmp_path / "f.csv")
    table = read_fleet(path)
    assert table.covariates == ["wear", "temp", "site=a", "site=b", "const"]  # file order, one-hot in place
    out = load_dataset(DataConfig(dataset=str(path), lookback_window=4, pred_horizon=8))
    sc = out.info["scaler"]
    assert sc["covariates"][sc["keep"][0]] == "wear" and "const" not in [sc["covariates"][k] for k in sc["keep"]]
    # independent reference: pandas forward fill, then the median of the training units' observed values
    train = out.info["split_units"]["train"]
    med = df[df.unit.isin(train)]["temp"].median()
    ref = df.groupby("unit")["temp"].ffill().fillna(med)
    j = sc["covariates"].index("temp")
    lo, hi = sc["lo"][sc["keep"].index(j)], sc["hi"][sc["keep"].index(j)]
    assert lo == pytest.approx(ref[df.unit.isin(train)].min()) and hi == pytest.approx(ref[df.unit.isin(train)].max())
    f = out.feature_names.index("temp")
    for part in ("train", "val", "test"):
        w = getattr(out, part)
        for u in np.unique(w.unit):
            last = w.end[w.unit == u]
            got = w.data[last, f]
            want = 2 * (ref[df.unit == u].to_numpy()[-len(last) :] - lo) / (hi - lo) - 1
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_labels_with_several_failures_match_a_brute_force_walk(tmp_path):
    df, _ = make_fleet(10, 80, seed=1)
    path = _write(df, tmp_path / "f.parquet")
    horizon = 16
    data = load_dataset(DataConfig(dataset=str(path), lookback_window=8, pred_horizon=horizon))
    for w in (data.train, data.val, data.test):
        steps_seen = {}
        for i in range(len(w)):
            u = int(w.unit[i])
            j = steps_seen.setdefault(u, 0)
            steps_seen[u] += 1
            ev = df[df.unit == u].event.to_numpy()
            nxt = next((k for k in range(j, len(ev)) if ev[k] == 1), None)
            want_l = (nxt - j) if nxt is not None else (len(ev) - 1 - j)
            want_c = nxt is None or want_l >= horizon
            assert (w.event_index[i], bool(w.censored[i])) == (want_l, want_c), (u, j)


def test_split_scaling_uses_training_units_only(tmp_path):
    df, _ = make_fleet(12, 40, seed=2)
    p1 = _write(df, tmp_path / "a.csv")
    d1 = load_dataset(DataConfig(dataset=str(p1), lookback_window=4, pred_horizon=8))
    test_units = d1.info["split_units"]["test"]
    df2 = df.copy()
    df2.loc[df2.unit.isin(test_units), "wear"] *= 100  # only test units change
    p2 = _write(df2, tmp_path / "b.csv")
    d2 = load_dataset(DataConfig(dataset=str(p2), lookback_window=4, pred_horizon=8))
    assert set(d1.info["split_units"]["train"]).isdisjoint(test_units)
    np.testing.assert_array_equal(d1.train.x, d2.train.x)
    assert not np.array_equal(d1.test.x, d2.test.x)


def test_data_version_is_the_content_hash_and_the_name_the_stem(tmp_path):
    df, _ = make_fleet(6, 30)
    path = _write(df, tmp_path / "pumps.csv")
    cfg = ExperimentConfig(dataset=str(path), model="gru_basic")
    v1 = load_dataset(cfg.data_config()).data_version
    os.utime(path, ns=(1, 1))  # touched, same bytes: same version
    assert load_dataset(cfg.data_config()).data_version == v1
    df.loc[3, "temp"] += 1.0
    _write(df, path)
    clear_cache()
    assert load_dataset(cfg.data_config()).data_version != v1
    assert dataset_name(cfg.dataset) == "pumps" and cfg.run_dir_name(3).startswith("logs/pumps/gru_basic/")
    assert cfg.display_name().startswith("pumps/gru_basic/")
    with gzip.open(tmp_path / "more.csv.gz", "wt") as fh:
        df.to_csv(fh, index=False)
    assert dataset_name(str(tmp_path / "more.csv.gz")) == "more"
    spec = SweepSpec(datasets=[str(path), "turbofan"], models=["gru_basic"])
    assert [p.name.split("/")[0] for p in expand(spec)] == ["pumps", "turbofan"]
    with pytest.raises(ValueError, match="unknown dataset"):
        DataConfig(dataset="pumps.txt")
