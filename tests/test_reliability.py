"""Nothing is lost when processes die, and bad input gets a one-line error (issue: reliability)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ddrsa.atomic import write_json
from ddrsa.sweep.results import SweepLock
from tests.conftest import ROOT, TINY, assert_one_line_error, read_results, run_cli

SWEEP = ["flows/sweep.py"]


def _completed_dirs(out: Path) -> list[Path]:
    return [p.parent for p in out.glob("logs/**/test_metrics.json")]


def _in_flight_dirs(out: Path) -> list[Path]:
    return [p.parent for p in out.glob("logs/**/checkpoint_last.pt") if not (p.parent / "test_metrics.json").exists()]


def _epochs_done(run_dir: Path) -> int:
    """Epochs recorded in run_dir/training_log.json (written after each checkpoint); 0 if none yet."""
    try:
        return len(json.loads((run_dir / "training_log.json").read_text())["epochs"])
    except (OSError, ValueError, KeyError):
        return 0


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group `pgid`, read from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state ppid pgrp ...
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            alive.append(int(stat.parent.name))
    return alive


def crash(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGKILL a command's whole process group (flow, Prefect server, Dask nannies and workers),
    as a power cut or the OOM killer would, and wait until none of them can run another line."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + timeout
    while _group_members(proc.pid):
        assert time.monotonic() < deadline, f"processes {_group_members(proc.pid)} survived SIGKILL"
        time.sleep(0.05)


KILL_EPOCHS = 12  # long enough that an experiment seen at epoch <= KILL_EPOCHS - 4 cannot finish before the kill


@pytest.mark.slow
@pytest.mark.reliability
def test_sigkilled_sweep_resumes_without_retraining_finished_work(tmp_path, prefect_server):
    """The whole sweep (every process) is SIGKILLed while one experiment has finished and another
    is mid-training with a checkpoint; the same command finishes the grid, resumes the
    interrupted run from its checkpoint and neither retrains nor rewrites the finished one."""
    out = tmp_path / "killed"
    args = [*SWEEP, "--datasets", "turbofan", "--models", "paper", "gru_basic", "--batch-sizes", "32", "64",
            "--data-source", "synthetic", "--max-units", "12", "--window-stride", "4", "--lookback-window", "32",
            "--pred-horizon", "16", "--num-epochs", str(KILL_EPOCHS), "--patience", "50", "--n-workers", "1",
            "--gpus-per-experiment", "0.5", "--no-analysis", "--output-dir", str(out)]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        json_reads, target = 0, None
        # wait for the state the test needs: >= 1 experiment recorded as completed, and another
        # in flight with a checkpoint, far enough from its last epoch that it cannot finish now
        while target is None:
            assert proc.poll() is None, "sweep ended before the state to kill in was seen"
            assert time.monotonic() < deadline, "no experiment was seen in flight after a completed one"
            for name in ("all_results.json", "experiment_manifest.json"):
                if (out / name).exists():  # valid JSON at every moment (atomic replace)
                    json.loads((out / name).read_text())
                    json_reads += 1
            if (out / "all_results.json").exists() and any(r["status"] == "completed" for r in read_results(out)):
                target = next((d for d in _in_flight_dirs(out) if 1 <= _epochs_done(d) <= KILL_EPOCHS - 4), None)
            if target is None:
                time.sleep(0.05)
        crash(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    killed_at_epoch = _epochs_done(target)
    assert 1 <= killed_at_epoch < KILL_EPOCHS and not (target / "test_metrics.json").exists()
    recorded = {out / r["run_dir"] for r in read_results(out) if r["status"] == "completed"}
    finished = {d: ((d / "checkpoint_last.pt").stat().st_mtime_ns, (d / "test_metrics.json").stat().st_mtime_ns)
                for d in _completed_dirs(out)}
    assert recorded and recorded <= set(finished) and json_reads > 0
    json.loads((out / "all_results.json").read_text())
    version = json.loads((out / "experiment_manifest.json").read_text())["code_version"]

    run_cli(args, check=True, timeout=600)
    records = read_results(out)
    assert len(records) == 4 and all(r["status"] == "completed" for r in records)
    # the cache key holds the code version: an edit of ddrsa/ between the runs (a shared working
    # tree) rightly re-evaluates finished runs, but never retrains them
    same_code = json.loads((out / "experiment_manifest.json").read_text())["code_version"] == version
    for run_dir, (checkpoint_mtime, metrics_mtime) in finished.items():
        assert (run_dir / "checkpoint_last.pt").stat().st_mtime_ns == checkpoint_mtime  # not retrained
        if run_dir in recorded and same_code:  # cached: not even re-evaluated
            assert (run_dir / "test_metrics.json").stat().st_mtime_ns == metrics_mtime
    by_dir = {out / r["run_dir"]: r for r in records}
    assert by_dir[target]["resumed_from_epoch"] >= killed_at_epoch
    for r in records:
        log = json.loads((out / r["run_dir"] / "training_log.json").read_text())
        assert [e["epoch"] for e in log["epochs"]] == list(range(1, KILL_EPOCHS + 1))


@pytest.mark.slow
@pytest.mark.reliability
def test_worker_killed_mid_experiment_is_rescheduled(tmp_path, prefect_server):
    """gru_basic's worker is SIGKILLed 0.5 s into training: Dask restarts it and re-runs the
    experiment; every experiment completes."""
    out = tmp_path / "workers"
    proc = run_cli([*SWEEP, "--datasets", "turbofan", "--models", "paper", "gru_basic", *TINY,
                    "--window-stride", "1", "--num-epochs", "3", "--n-workers", "1", "--no-analysis",
                    "--output-dir", str(out)],
                   env={"DDRSA_INJECT_FAULT": "killonce:gru_basic:*", "DDRSA_FAULT_MARKER_DIR": str(tmp_path),
                        "DDRSA_FAULT_DELAY_S": "0.5"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert list(tmp_path.glob(".ddrsa-fault-*-fired")), "gru_basic finished before its worker could be killed"
    records = {r["model"]: r for r in read_results(out)}
    assert {m: r["status"] for m, r in records.items()} == {"paper": "completed", "gru_basic": "completed"}


@pytest.mark.slow
@pytest.mark.reliability
def test_experiment_that_always_kills_its_worker_fails_alone(tmp_path, prefect_server):
    """lstm_basic kills its worker on every attempt: Dask gives up (KilledWorker); the sweep
    records it as failed with the error, writes the others, and ends normally (exit 1)."""
    out = tmp_path / "killer"
    proc = run_cli([*SWEEP, "--datasets", "turbofan", "--models", "lstm_basic", *TINY, "--n-workers", "1",
                    "--no-analysis", "--output-dir", str(out)],
                   env={"DDRSA_INJECT_FAULT": "kill:lstm_basic:*",
                        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-5000:]
    [record] = read_results(out)
    assert record["status"] == "failed" and "KilledWorker" in record["error"]
    assert "0 completed (0 cached), 1 failed, 0 diverged of 1" in proc.stdout


def test_second_sweep_on_same_folder_refuses(tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    with SweepLock(out):
        proc = run_cli([*SWEEP, *TINY, "--datasets", "turbofan", "--models", "paper", "--output-dir", str(out)])
    assert_one_line_error(proc, "another sweep")
    # a lock left behind by a dead process does not block: flock dies with its holder
    (out / ".sweep.lock").write_text("pid 999999 since long ago")
    with SweepLock(out):
        pass


def test_atomic_json_never_leaves_partial_file(tmp_path):
    path = tmp_path / "all_results.json"
    write_json(path, [{"a": 1}])
    with pytest.raises(TypeError):
        write_json(path, [{"a": object()}])  # fails while serialising
    assert json.loads(path.read_text()) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["all_results.json"]


def _mount_tmpfs(target: Path, size: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True).returncode == 0


def test_full_disk_is_a_clear_error_without_partial_json(tmp_path):
    mnt = tmp_path / "full"
    if not _mount_tmpfs(mnt, "64k"):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        write_json(mnt / "all_results.json", [{"ok": True}])
        with pytest.raises(OSError):
            write_json(mnt / "all_results.json", [{"x": "y" * 200_000}])
        assert json.loads((mnt / "all_results.json").read_text()) == [{"ok": True}]
        assert [p.name for p in mnt.iterdir()] == ["all_results.json"]
    finally:
        subprocess.run(["umount", str(mnt)])


def test_read_only_output_folder_is_a_clear_error(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not supported here")
    try:
        proc = run_cli([*SWEEP, *TINY, "--datasets", "turbofan", "--models", "paper", "--output-dir", str(out)])
        assert_one_line_error(proc, "not writable")
    finally:
        subprocess.run(["chattr", "-i", str(out)])
    assert list(out.iterdir()) == []


BAD_SWEEP_INPUT = [
    (["--learning-rates", "-0.001"], "learning_rate"),
    (["--learning-rates", "0"], "learning_rate"),
    (["--batch-sizes", "0"], "batch_size"),
    (["--batch-sizes", "12.5"], "batch-sizes"),
    (["--lambda-params", "1.2"], "lambda_param"),
    (["--lambda-params", "-0.1"], "lambda_param"),
    (["--nasa-weights", "-1"], "nasa_weight"),
    (["--dropout-rates", "1.0"], "dropout"),
    (["--models", "lstm_huge"], "unknown model"),
    (["--models", "../evil"], "unknown model"),
    (["--models", "a/b"], "unknown model"),
    (["--datasets", "mars"], "datasets"),
    (["--subset", "FD007"], "subset"),
    (["--preset", "nightly-ish"], "unknown preset"),
    (["--models"], "--models"),
    (["--gpus-per-experiment", "0"], "gpus-per-experiment"),
]


@pytest.mark.parametrize("flags,needle", BAD_SWEEP_INPUT)
def test_bad_sweep_input(tmp_path, flags, needle):
    out = tmp_path / "never"
    proc = run_cli([*SWEEP, "--output-dir", str(out), *flags])
    assert_one_line_error(proc, needle)
    assert not out.exists()


def test_output_folder_that_is_a_file(tmp_path):
    target = tmp_path / "afile"
    target.write_text("not a folder")
    proc = run_cli([*SWEEP, "--output-dir", str(target)])
    assert_one_line_error(proc, "is a file")


def test_scheduler_address_nobody_listens_fails_fast(tmp_path):
    from flows.server import free_port

    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = run_cli([*SWEEP, *TINY, "--scheduler-address", address, "--output-dir", str(tmp_path / "never")])
    assert time.monotonic() - t0 < 30
    assert_one_line_error(proc, address)
    assert not (tmp_path / "never").exists()


def test_missing_data_folder(tmp_path):
    proc = run_cli([*SWEEP, "--data-source", "real", "--output-dir", str(tmp_path / "never")],
                   env={"DDRSA_DATA_DIR": str(tmp_path / "no-such-folder")})
    assert_one_line_error(proc, "no-such-folder")
    assert not (tmp_path / "never").exists()


def _broken_cmapss(tmp_path: Path, corrupt) -> Path:
    from ddrsa.data.synthetic import write_synthetic_cmapss

    folder = tmp_path / "data" / "cmapss"
    write_synthetic_cmapss(folder, "FD001", n_units=6)
    train = folder / "train_FD001.txt"
    train.write_text(corrupt(train.read_text()))
    return tmp_path / "data"


@pytest.mark.parametrize("corrupt,needle", [
    (lambda t: t.rstrip("\n").rsplit(" ", 7)[0] + "\n", "train_FD001"),                      # truncated
    (lambda t: t.replace("\n", "\n1 9 0.1 0.2 100 abc" + " 1" * 20 + "\n", 1), "train_FD001"),  # not a number
    (lambda t: "\n".join(" ".join(l.split()[:20]) for l in t.splitlines()) + "\n", "train_FD001"),  # columns
])
def test_malformed_data_file(tmp_path, corrupt, needle):
    data_dir = _broken_cmapss(tmp_path, corrupt)
    proc = run_cli([*SWEEP, "--datasets", "turbofan", "--models", "paper", "--data-source", "real",
                    "--output-dir", str(tmp_path / "never")], env={"DDRSA_DATA_DIR": str(data_dir)})
    assert_one_line_error(proc, needle)
    assert not (tmp_path / "never").exists()


def test_run_folders_cannot_escape_output(tmp_path):
    from ddrsa.errors import DDRSAError
    from ddrsa.sweep.results import safe_run_dir

    assert safe_run_dir(tmp_path, "logs/turbofan/paper/x").is_relative_to(tmp_path)
    with pytest.raises(DDRSAError):
        safe_run_dir(tmp_path, "../../etc")


def test_checkpoints_load_with_weights_only():
    offenders = []
    for path in (ROOT / "ddrsa").rglob("*.py"):
        for line in path.read_text().splitlines():
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path}: {line.strip()}")
    assert not offenders
