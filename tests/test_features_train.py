"""Advertised single-run features, each run the way a user runs it (issue 18): training flags,
settings from `.env` / `DDRSA_TORCH_THREADS`, trainer guards, real FD003/FD004 for one epoch.

Bugs tried (`python benchmarks/mutation.py NAME`, caught): run-lock-not-waited (run_lock goes on
without the flock: test_second_trainer_on_one_folder_waits_for_the_lock)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ddrsa.config import DataConfig, ExperimentConfig
from ddrsa.data import load_dataset, synthetic
from ddrsa.errors import DDRSAError
from ddrsa.settings import Settings
from ddrsa.train import build_parser, config_from_args
from tests.conftest import REAL_DATA_DIR, ROOT, assert_one_line_error, real_data_file, run_cli

# in-process runs: synthetic, a few units, short windows (about a second per run on one thread)
TINY_CFG = dict(data_source="synthetic", max_units=12, window_stride=8, lookback_window=32, pred_horizon=16)
SYNTHETIC = Settings(data_source="synthetic")


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    metrics.pop("train_seconds")
    return metrics


def _losses(run_dir: Path) -> list[tuple]:
    log = json.loads((run_dir / "training_log.json").read_text())
    return [(e["epoch"], e["train_loss"], e["val_loss"]) for e in log["epochs"]]


@pytest.fixture()
def torch_state():
    """The trainer sets process-wide torch state (threads, deterministic algorithms): restore it."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(det)


def _train(config: ExperimentConfig, run_dir: Path, settings: Settings | None = SYNTHETIC):
    from ddrsa.trainer import train

    return train(config, run_dir, settings=settings)


# ------------------------------------------------------------------------------ flags
def test_deterministic_runs_give_identical_metrics(tmp_path, torch_state):
    """`--deterministic`: two runs of one config give the same losses and test metrics, bit for bit."""
    args = build_parser().parse_args(
        [
            "--model",
            "gru_basic",
            "--num-epochs",
            "2",
            "--deterministic",
            "--output-dir",
            "unused",
            "--data-source",
            "synthetic",
            "--max-units",
            "12",
            "--window-stride",
            "8",
            "--lookback-window",
            "32",
            "--pred-horizon",
            "16",
        ]
    )
    config = config_from_args(args)
    assert config.deterministic
    first, second = _train(config, tmp_path / "a"), _train(config, tmp_path / "b")
    assert torch.are_deterministic_algorithms_enabled()
    assert first.status == second.status == "completed"
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    # another seed is another run: the check above can tell runs apart
    _train(config.model_copy(update={"seed": 7}), tmp_path / "c")
    assert _losses(tmp_path / "c") != _losses(tmp_path / "a")


@pytest.mark.slow
def test_compile_trains_on_cpu_close_to_eager(tmp_path, torch_state):
    """`--compile` (torch.compile, inductor on CPU): trains, and the metrics match the eager run
    of the same config within float tolerance (same seed, same batches). Dropout 0: compiled
    dropout draws other random masks than eager. About 10-25 s of compiling on 2 cores."""
    base = ExperimentConfig(model="paper", num_epochs=1, deterministic=True, dropout=0.0, **TINY_CFG)
    _train(base, tmp_path / "eager")
    compiled = _train(base.model_copy(update={"compile": True}), tmp_path / "compiled")
    assert compiled.status == "completed"
    assert json.loads((tmp_path / "compiled" / "config.json").read_text())["compile"] is True
    m_eager, m_comp = _metrics(tmp_path / "eager"), _metrics(tmp_path / "compiled")
    for key in ("rul_mae", "rul_rmse", "concordance_index", "integrated_brier_score"):
        assert m_comp[key] == pytest.approx(m_eager[key], rel=1e-5, abs=1e-6), key
    ((ep_e, tl_e, vl_e),) = _losses(tmp_path / "eager")
    ((ep_c, tl_c, vl_c),) = _losses(tmp_path / "compiled")
    assert ep_c == ep_e == 1
    assert tl_c == pytest.approx(tl_e, rel=1e-5) and vl_c == pytest.approx(vl_e, rel=1e-5)


def test_patience_stops_at_the_right_epoch(tmp_path, torch_state):
    """`--patience P`: training ends after P epochs without a validation improvement.

    With a learning rate of 1e-12 the weights do not move, so epoch 1 is the best and epochs 2..1+P
    do not improve: the run stops after epoch 1+P of 10. A normal run's log is checked against the
    rule recomputed from its own validation losses."""
    config = ExperimentConfig(model="paper", num_epochs=10, patience=2, learning_rate=1e-12, **TINY_CFG)
    result = _train(config, tmp_path / "frozen")
    log = json.loads((tmp_path / "frozen" / "training_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2, 3]
    assert log["stopped_early"] is True and log["best_epoch"] == 1 and result.epochs_trained == 3

    config = ExperimentConfig(model="paper", num_epochs=6, patience=1, learning_rate=0.05, **TINY_CFG)
    _train(config, tmp_path / "moving")
    log = json.loads((tmp_path / "moving" / "training_log.json").read_text())
    best, bad, expected_last = float("inf"), 0, None
    for epoch, val in enumerate((e["val_loss"] for e in log["epochs"]), 1):  # the rule, by hand
        if val < best - 1e-6:
            best, bad = val, 0
        else:
            bad += 1
        expected_last = epoch
        if bad >= config.patience:
            break
    assert len(log["epochs"]) == expected_last
    assert log["stopped_early"] == (expected_last < config.num_epochs)


def test_split_seed_changes_the_unit_split_and_nothing_else():
    """`--split-seed`: other units go to train/val/test; the units, their labels and windows, the
    data version and every other setting stay the same."""
    args = ["--output-dir", "unused", "--model", "paper"]
    a = config_from_args(build_parser().parse_args(args))
    b = config_from_args(build_parser().parse_args([*args, "--split-seed", "3"]))
    assert b.split_seed == 3 and a.split_seed == 0
    assert {k: v for k, v in a.model_dump().items() if k != "split_seed"} == {
        k: v for k, v in b.model_dump().items() if k != "split_seed"
    }
    assert a.seed == b.seed and a.experiment_id() != b.experiment_id()  # another cache key

    cfg = DataConfig(**{k: v for k, v in TINY_CFG.items()}, split_seed=0)
    d0 = load_dataset(cfg, SYNTHETIC)
    d1 = load_dataset(cfg.model_copy(update={"split_seed": 3}), SYNTHETIC)
    s0, s1 = d0.info["split_units"], d1.info["split_units"]
    assert s0 != s1, "the split did not change"
    assert sorted(sum(s0.values(), [])) == sorted(sum(s1.values(), []))
    assert d0.n_units == d1.n_units and d0.data_version == d1.data_version
    assert d0.feature_names == d1.feature_names

    def per_unit(d):
        out = {}
        for w in (d.train, d.val, d.test):
            for u in np.unique(w.unit):
                sel = w.unit == u
                out[int(u)] = (
                    w.event_index[sel].tolist(),
                    w.censored[sel].tolist(),
                    w.rul[sel].tolist(),
                    w.mask[sel].sum(axis=1).tolist(),
                )
        return out

    assert per_unit(d0) == per_unit(d1)
    np.testing.assert_array_equal(d0.benchmark.rul, d1.benchmark.rul)


def test_downsample_hours_sets_the_azure_step(torch_state, tmp_path):
    """`--downsample-hours H`: one Azure step per H hours. Steps per machine and event steps are
    recomputed from the generator's raw tables."""
    args = build_parser().parse_args(["--dataset", "azure_pm", "--downsample-hours", "30", "--output-dir", "x"])
    assert config_from_args(args).downsample_hours == 30
    tables = synthetic.make_synthetic_azure(n_machines=12, seed=0)  # what data_source=synthetic loads
    tel, fail = tables["telemetry"], tables["failures"]
    for hours in (15, 30):
        d = load_dataset(
            DataConfig(
                dataset="azure_pm", data_source="synthetic", lookback_window=8, pred_horizon=16, downsample_hours=hours
            ),
            SYNTHETIC,
        )
        for w in (d.train, d.val, d.test):
            for m in np.unique(w.unit)[:4]:
                t = tel.loc[tel.machineID == m, "datetime"]
                span_h = int((t.max() - t.min()) / pd.Timedelta(hours=1))
                assert int((w.unit == m).sum()) == span_h // hours + 1, (hours, m)
                f = fail.loc[fail.machineID == m, "datetime"].unique()
                steps = {int((pd.Timestamp(x) - t.min()) / pd.Timedelta(hours=1)) // hours for x in f}
                sel = w.unit == m
                assert int(((w.event_index[sel] == 0) & ~w.censored[sel]).sum()) == len(steps), (hours, m)
    run = _train(
        ExperimentConfig(dataset="azure_pm", model="paper", num_epochs=1, downsample_hours=30, **TINY_CFG),
        tmp_path / "azure30",
    )
    assert run.status == "completed"


# ------------------------------------------------------------------------------ settings
def test_settings_from_a_dot_env_file(tmp_path):
    """A `.env` in the working folder sets DDRSA_DATA_DIR and DDRSA_DATA_SOURCE for `python -m ddrsa.train`."""
    data = tmp_path / "mydata"
    synthetic.write_synthetic_cmapss(data / "cmapss", "FD001", n_units=12)
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text(f"DDRSA_DATA_DIR={data}\nDDRSA_DATA_SOURCE=real\nDDRSA_TORCH_THREADS=1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DDRSA_")}
    env["PYTHONPATH"] = str(ROOT)
    import subprocess

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddrsa.train",
            "--model",
            "paper",
            "--num-epochs",
            "1",
            "--lookback-window",
            "16",
            "--pred-horizon",
            "16",
            "--output-dir",
            "run",
            "--quiet",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((work / "run" / "test_metrics.json").read_text())
    expected = load_dataset(
        DataConfig(lookback_window=16, pred_horizon=16), Settings(data_dir=data, data_source="real")
    )
    assert metrics["data_source"] == "real" and metrics["data_version"] == expected.data_version
    # the same .env pointing at an empty folder: the error names the folder it read from .env
    (work / ".env").write_text(f"DDRSA_DATA_DIR={tmp_path / 'empty'}\nDDRSA_DATA_SOURCE=real\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ddrsa.train", "--output-dir", "never"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(proc, "train_FD001", str(tmp_path / "empty"))


def test_torch_threads_setting(tmp_path, monkeypatch, torch_state):
    """DDRSA_TORCH_THREADS sets the trainer's torch intra-op threads; out-of-range values are refused."""
    torch.set_num_threads(1)
    monkeypatch.setenv("DDRSA_TORCH_THREADS", "2")
    monkeypatch.setenv("DDRSA_DATA_SOURCE", "synthetic")
    _train(ExperimentConfig(model="paper", num_epochs=1, **TINY_CFG), tmp_path / "t", settings=None)
    assert torch.get_num_threads() == 2
    monkeypatch.setenv("DDRSA_TORCH_THREADS", "0")
    proc = run_cli(["-m", "ddrsa.train", "--output-dir", str(tmp_path / "never")])
    assert proc.returncode != 0 and "torch_threads" in proc.stderr
    assert not (tmp_path / "never").exists()


# ------------------------------------------------------------------------------ trainer guards
def test_run_folder_of_another_configuration_is_refused(tmp_path, torch_state):
    run = tmp_path / "run"
    config = ExperimentConfig(model="paper", num_epochs=1, **TINY_CFG)
    _train(config, run)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(DDRSAError, match="different configuration"):
        _train(config.model_copy(update={"learning_rate": 0.01}), run)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing touched
    proc = run_cli(
        [
            "-m",
            "ddrsa.train",
            "--model",
            "paper",
            "--num-epochs",
            "1",
            "--learning-rate",
            "0.01",
            "--data-source",
            "synthetic",
            "--max-units",
            "12",
            "--window-stride",
            "8",
            "--lookback-window",
            "32",
            "--pred-horizon",
            "16",
            "--output-dir",
            str(run),
        ]
    )
    assert_one_line_error(proc, "different configuration")


def _open_file_count(path: str) -> int:
    """How many of this process's file descriptors are open on `path` (Linux /proc)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}") == path
    return n


def test_second_trainer_on_one_folder_waits_for_the_lock(tmp_path, torch_state):
    """The per-run flock: while another process holds it the trainer waits (documented: a dying
    worker of a killed sweep), then trains once it is released; past the timeout it refuses."""
    from ddrsa.run_state import run_lock

    run = tmp_path / "run"
    run.mkdir()
    holder = open(run / ".run.lock", "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    with pytest.raises(DDRSAError, match="locked by another training process"):
        with run_lock(run, timeout_s=0.5):
            pass
    outcome = {}

    def second():
        outcome["result"] = _train(ExperimentConfig(model="paper", num_epochs=1, **TINY_CFG), run)
        outcome["done"] = time.monotonic()

    thread = threading.Thread(target=second)
    thread.start()
    # positive signal: the trainer has opened the lock file (run_lock tries the flock right after)
    lock_path = str((run / ".run.lock").resolve())
    deadline = time.monotonic() + 120
    while _open_file_count(lock_path) < 2:
        assert thread.is_alive(), outcome
        assert time.monotonic() < deadline, "the trainer never reached the run lock"
        time.sleep(0.01)
    # then four of run_lock's 0.5-s polls: a trainer that went on without the lock writes
    # config.json first thing (milliseconds), so the folder would hold more than the lock file
    time.sleep(4 * 0.5)
    assert thread.is_alive() and sorted(p.name for p in run.iterdir()) == [".run.lock"], "trained while locked"
    released = time.monotonic()
    fcntl.flock(holder, fcntl.LOCK_UN)
    holder.close()
    thread.join(timeout=120)
    assert outcome["result"].status == "completed" and outcome["done"] > released


# ------------------------------------------------------------------------------ real data
@pytest.mark.realdata
@pytest.mark.parametrize("subset, n_units", [("FD003", 100), ("FD004", 249)])
def test_real_fd003_fd004_load_and_train_one_epoch(tmp_path, subset, n_units, torch_state):
    settings = Settings(data_dir=REAL_DATA_DIR, data_source="real")
    config = ExperimentConfig(
        subset=subset,
        model="paper",
        num_epochs=1,
        data_source="real",
        window_stride=64,
        lookback_window=32,
        pred_horizon=16,
    )
    data = load_dataset(config, settings)
    assert data.data_source == "real" and sum(data.n_units.values()) == n_units
    assert data.info["n_conditions"] == (6 if subset == "FD004" else 1)
    test_units = np.loadtxt(real_data_file(f"cmapss/RUL_{subset}.txt"))
    np.testing.assert_array_equal(data.benchmark.rul, test_units)
    result = _train(config, tmp_path / subset, settings=settings)
    metrics = json.loads((tmp_path / subset / "test_metrics.json").read_text())
    assert result.status == "completed" and metrics["data_source"] == "real"
    assert metrics["benchmark_n_units"] == len(test_units)
    assert np.isfinite(metrics["rul_rmse"]) and 0 <= metrics["concordance_index"] <= 1
