"""Nothing is lost when processes die, and bad input gets a one-line error (issue: reliability).

Bugs tried (`python benchmarks/mutation.py NAME`, caught): resume-ignores-checkpoint
(test_resumed_deterministic_run_ends_like_an_uninterrupted_one), code-version-per-process (every
re-run retrains: test_sigkilled_sweep_resumes_without_retraining_finished_work). The full-disk and
read-only tests need root, tmpfs and chattr: skipped without them, failed under CI (conftest
`cannot_run`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ddrsa.atomic import write_json
from ddrsa.errors import DDRSAError
from ddrsa.sweep.results import SweepLock
from flows.faults import read_attempt_log
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


def _checkpoint_epoch(run_dir: Path) -> int:
    """The epoch of run_dir/checkpoint_last.pt, where a resumed run starts (the log may be one ahead)."""
    import torch

    return int(torch.load(run_dir / "checkpoint_last.pt", weights_only=True)["epoch"])


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


@contextlib.contextmanager
def process_group(args: list[str], **popen_kwargs):
    """`python *args` in the checkout, leading a new process group (a test can signal it and all
    it started); whatever of the group still runs on the way out is SIGKILLed."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, start_new_session=True, **popen_kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


LOG_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d[.,]\d{3} [|-] ")
KILL_EPOCHS = 12  # long enough that an experiment seen at epoch <= KILL_EPOCHS - 4 cannot finish before the kill


@pytest.mark.slow
@pytest.mark.reliability
def test_sigkilled_sweep_resumes_without_retraining_finished_work(tmp_path, prefect_server):
    """The whole sweep (every process) is SIGKILLed while one experiment has finished and another
    is mid-training with a checkpoint; the same command finishes the grid, resumes the
    interrupted run from its checkpoint and neither retrains nor rewrites the finished one."""
    out = tmp_path / "killed"
    args = [
        *SWEEP,
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "gru_basic",
        "--batch-sizes",
        "32",
        "64",
        "--data-source",
        "synthetic",
        "--max-units",
        "12",
        "--window-stride",
        "4",
        "--lookback-window",
        "32",
        "--pred-horizon",
        "16",
        "--num-epochs",
        str(KILL_EPOCHS),
        "--patience",
        "50",
        "--n-workers",
        "1",
        "--gpus-per-experiment",
        "0.5",
        "--no-analysis",
        "--output-dir",
        str(out),
    ]
    with process_group(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
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
    killed_at_epoch = _checkpoint_epoch(target)
    assert 1 <= killed_at_epoch < KILL_EPOCHS and not (target / "test_metrics.json").exists()
    recorded = {out / r["run_dir"] for r in read_results(out) if r["status"] == "completed"}
    finished = {
        d: ((d / "checkpoint_last.pt").stat().st_mtime_ns, (d / "test_metrics.json").stat().st_mtime_ns)
        for d in _completed_dirs(out)
    }
    assert recorded and recorded <= set(finished) and json_reads > 0
    json.loads((out / "all_results.json").read_text())
    version = json.loads((out / "experiment_manifest.json").read_text())["code_version"]

    run_cli(args, check=True, timeout=600)
    records = read_results(out)
    assert len(records) == 4 and all(r["status"] == "completed" for r in records)
    # the test's tree is not edited while it runs: a code version that differs here is a bug
    # (every re-run would retrain everything), not a reason to skip the checks
    assert json.loads((out / "experiment_manifest.json").read_text())["code_version"] == version
    for run_dir, (checkpoint_mtime, metrics_mtime) in finished.items():
        assert (run_dir / "checkpoint_last.pt").stat().st_mtime_ns == checkpoint_mtime  # not retrained
        if run_dir in recorded:  # cached: not even re-evaluated
            assert (run_dir / "test_metrics.json").stat().st_mtime_ns == metrics_mtime
    by_dir = {out / r["run_dir"]: r for r in records}
    assert by_dir[target]["resumed_from_epoch"] >= killed_at_epoch
    for r in records:
        log = json.loads((out / r["run_dir"] / "training_log.json").read_text())
        assert [e["epoch"] for e in log["epochs"]] == list(range(1, KILL_EPOCHS + 1))


def _contiguous(out: Path, record: dict) -> list[int]:
    log = json.loads((out / record["run_dir"] / "training_log.json").read_text())
    return [e["epoch"] for e in log["epochs"]]


@pytest.mark.slow
@pytest.mark.reliability
def test_worker_killed_while_cluster_starts_gets_a_fresh_cluster(tmp_path, prefect_server):
    """The first Dask worker process dies (SIGKILL) during cluster start-up, which fails Nanny
    start-up for the whole local cluster: the sweep starts a fresh cluster and completes."""
    out = tmp_path / "startup"
    proc = run_cli(
        [
            *SWEEP,
            "--datasets",
            "turbofan",
            "--models",
            "paper",
            *TINY,
            "--num-epochs",
            "1",
            "--n-workers",
            "1",
            "--no-analysis",
            "--output-dir",
            str(out),
        ],
        env={"DDRSA_INJECT_FAULT": "killstart:*:1", "DDRSA_FAULT_MARKER_DIR": str(tmp_path)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert list(tmp_path.glob(".ddrsa-fault-*-fired")), "no worker was killed at start-up"
    assert "the Dask cluster failed to start" in proc.stdout + proc.stderr
    assert [r["status"] for r in read_results(out)] == ["completed"]


@pytest.mark.slow
@pytest.mark.reliability
def test_worker_killed_mid_experiment_is_rescheduled(tmp_path, prefect_server):
    """gru_basic's worker is SIGKILLed right after its first checkpoint: Dask restarts the worker
    and re-runs the experiment, which resumes from that checkpoint; every experiment completes."""
    out = tmp_path / "workers"
    proc = run_cli(
        [
            *SWEEP,
            "--datasets",
            "turbofan",
            "--models",
            "paper",
            "gru_basic",
            *TINY,
            "--window-stride",
            "4",
            "--num-epochs",
            "4",
            "--n-workers",
            "1",
            "--no-analysis",
            "--output-dir",
            str(out),
        ],
        env={
            "DDRSA_INJECT_FAULT": "killonce:gru_basic:*",
            "DDRSA_FAULT_MARKER_DIR": str(tmp_path),
            "DDRSA_FAULT_AFTER_EPOCH": "1",
        },
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert list(tmp_path.glob(".ddrsa-fault-*-fired")), "gru_basic's worker was never killed"
    records = {r["model"]: r for r in read_results(out)}
    assert {m: r["status"] for m, r in records.items()} == {"paper": "completed", "gru_basic": "completed"}
    assert records["gru_basic"]["resumed_from_epoch"] >= 1
    for r in records.values():
        assert _contiguous(out, r) == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.reliability
def test_experiment_that_always_kills_its_worker_fails_alone(tmp_path, prefect_server):
    """lstm_basic kills its worker on every attempt while sharing it (0.5 GPU each) with others:
    Dask gives up on everything the dead worker held (KilledWorker, no allowed failures); each is
    re-run alone on a worker, where only the killer dies again. The killer is recorded failed;
    its neighbours complete; the sweep ends normally (exit 1).

    Dask's lost-worker-timeout is 0 s here (default 15 s): SpecCluster would close the worker's
    Nanny at the first death, while it restarts the worker, and the sweep would lose its only
    worker (the neighbours' runs alone fail or wait forever). Under load the default did that
    once (two deaths 11 s apart); the sweep's cluster keeps its Nannies (flows/cluster.py)."""
    out = tmp_path / "killer"
    proc = run_cli(
        [
            *SWEEP,
            "--datasets",
            "turbofan",
            "--models",
            "lstm_basic",
            "paper",
            "gru_basic",
            *TINY,
            "--n-workers",
            "1",
            "--gpus-per-experiment",
            "0.5",
            "--no-analysis",
            "--output-dir",
            str(out),
        ],
        env={
            "DDRSA_INJECT_FAULT": "kill:lstm_basic:*",
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
            "DASK_DISTRIBUTED__DEPLOY__LOST_WORKER_TIMEOUT": "0s",
        },
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-5000:]
    records = {r["model"]: r for r in read_results(out)}
    assert {m: r["status"] for m, r in records.items()} == {
        "lstm_basic": "failed",
        "paper": "completed",
        "gru_basic": "completed",
    }, ({m: r.get("error") for m, r in records.items()}, proc.stdout[-6000:])
    assert "KilledWorker" in records["lstm_basic"]["error"] and "alone" in records["lstm_basic"]["error"]
    assert "2 completed (0 cached), 1 failed, 0 diverged of 3" in proc.stdout


def _locker(out: Path) -> subprocess.Popen:
    """Another process holding the sweep lock of `out` (prints `locked` once it holds it)."""
    code = (
        "import sys, time; from ddrsa.sweep.results import SweepLock; "
        f"lock = SweepLock({str(out)!r}).__enter__(); print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_of_a_killed_sweep_does_not_block(tmp_path):
    out = tmp_path / "locked"
    out.mkdir()
    holder = _locker(out)
    try:
        proc = run_cli([*SWEEP, *TINY, "--datasets", "turbofan", "--models", "paper", "--output-dir", str(out)])
        assert_one_line_error(proc, "another sweep", f"pid {holder.pid}")
        with pytest.raises(DDRSAError, match="another sweep"):
            SweepLock(out).__enter__()
    finally:
        holder.kill()  # SIGKILL: no clean-up runs; the lock file stays, naming a dead pid
        holder.wait()
    assert f"pid {holder.pid}" in (out / ".sweep.lock").read_text()
    with SweepLock(out):  # the kernel dropped the flock with its holder
        pass


@pytest.mark.slow
@pytest.mark.reliability
def test_second_sweep_refused_while_first_runs(tmp_path, prefect_server):
    """A real sweep holds the folder (its only experiment hangs until released): a second sweep
    on the same folder, from the command line or as a flow run (what a deployment run does), is
    refused without touching it; the first then finishes normally."""
    from flows.sweep import ddrsa_sweep

    out, release = tmp_path / "busy", tmp_path / "release"
    args = [
        *SWEEP,
        *TINY,
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "--n-workers",
        "1",
        "--no-analysis",
        "--output-dir",
        str(out),
    ]
    with process_group(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "DDRSA_INJECT_FAULT": "hang:paper:*",
            "DDRSA_FAULT_HANG_S": "300",
            "DDRSA_FAULT_RELEASE": str(release),
            "DDRSA_ATTEMPT_LOG": str(tmp_path / "a.log"),
        },
    ) as first:
        deadline = time.monotonic() + 300
        while not (tmp_path / "a.log").exists():  # the experiment is running: the lock is held
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        manifest = (out / "experiment_manifest.json").read_bytes()
        proc = run_cli(args)
        assert_one_line_error(proc, "another sweep", f"pid {first.pid}")
        with pytest.raises(DDRSAError, match="another sweep"):
            ddrsa_sweep(
                datasets=["turbofan"],
                models=["paper"],
                data_source="synthetic",
                max_units=12,
                window_stride=8,
                lookback_window=32,
                pred_horizon=16,
                num_epochs=2,
                output_dir=str(out),
                run_analysis=False,
            )
        assert (out / "experiment_manifest.json").read_bytes() == manifest and not (out / "all_results.json").exists()
        assert first.poll() is None
        release.touch()
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    [record] = read_results(out)
    assert record["status"] == "completed"


def test_atomic_write_failing_mid_write_keeps_old_file(tmp_path):
    """The writer fails after part of the new content is on disk: the old file stays whole and
    the temporary file is removed."""
    from ddrsa.atomic import _replace_with

    path = tmp_path / "all_results.json"
    write_json(path, [{"a": 1}])
    old = path.read_bytes()
    seen = []

    def half_then_fail(fh):
        fh.write("[" + '{"a": 2}, ' * 10_000)
        fh.flush()
        seen.extend((p.name, p.stat().st_size) for p in tmp_path.iterdir() if p.name != path.name)
        raise RuntimeError("serialiser broke mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        _replace_with(path, half_then_fail, "w")
    assert len(seen) == 1 and seen[0][1] > 50_000, seen  # the new content was partly written
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["all_results.json"]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory, request):
    """A finished one-experiment sweep: (its command line without --output-dir, its folder).
    Only the root-only tests below use it: without root it is not worth a server and a sweep."""
    _root_only("the full-disk and read-only tests (tmpfs, chattr)")
    request.getfixturevalue("prefect_server")
    out = tmp_path_factory.mktemp("finished") / "sweep"
    args = [*SWEEP, *TINY, "--datasets", "turbofan", "--models", "paper", "--n-workers", "1", "--no-analysis"]
    run_cli([*args, "--output-dir", str(out)], check=True)
    return args, out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".sweep.lock" and ".prefect-results" not in p.parts
    }


def _cannot_run(reason: str) -> None:
    from tests.conftest import cannot_run  # skipped here, a failure under CI

    cannot_run(reason)


def _root_only(what: str) -> None:
    if os.geteuid() != 0:
        _cannot_run(f"{what} needs root (CI runs as root); this run is uid {os.geteuid()}")


@pytest.mark.slow
@pytest.mark.reliability
def test_full_disk_is_a_clear_error_without_partial_json(tmp_path, finished_sweep):
    """The output folder of a finished sweep is on a full disk (a tmpfs filled to the last block):
    re-running the sweep is a one-line error, the old files are byte-identical, and no temporary
    file is left behind."""
    _root_only("mounting a tmpfs")
    args, done = finished_sweep
    mnt = tmp_path / "full"
    mnt.mkdir()
    size_kb = sum(p.stat().st_size // 4096 * 4 + 8 for p in done.rglob("*")) + 2048
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        _cannot_run(f"mount -t tmpfs failed: {mounted.stderr.strip()}")
    try:
        out = mnt / "sweep"
        shutil.copytree(done, out)
        before = _snapshot(out)
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to its last block
            with pytest.raises(OSError, match="No space"):
                while True:
                    os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
        proc = run_cli([*args, "--output-dir", str(out)])
        assert_one_line_error(proc, "no space left")
        assert _snapshot(out) == before
        assert not [p for p in out.rglob("*.tmp")]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
@pytest.mark.reliability
def test_read_only_output_folder_is_a_clear_error(tmp_path, finished_sweep):
    """The folder of a finished sweep is made immutable (chattr +i; root passes permission
    checks, so mode bits would not do): re-running is a one-line error and changes nothing."""
    _root_only("chattr +i")
    args, done = finished_sweep
    out = tmp_path / "ro"
    shutil.copytree(done, out)
    before = _snapshot(out)
    locked = subprocess.run(["chattr", "+i", str(out)], capture_output=True, text=True)
    if locked.returncode != 0:
        _cannot_run(f"chattr +i failed on {tmp_path}: {locked.stderr.strip()}")
    try:
        proc = run_cli([*args, "--output-dir", str(out)])
        assert_one_line_error(proc, "not writable")
    finally:
        subprocess.run(["chattr", "-i", str(out)])
    assert _snapshot(out) == before


@pytest.mark.slow
@pytest.mark.reliability
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path, prefect_server):
    """Ctrl-C (SIGINT to the sweep's process group, as a terminal sends it) while an experiment
    is mid-training: exit code 130, one line on stderr, the folder's lock is free, and the same
    command then completes the grid, resuming the interrupted run."""
    out = tmp_path / "interrupted"
    args = [
        *SWEEP,
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        "--data-source",
        "synthetic",
        "--max-units",
        "12",
        "--window-stride",
        "4",
        "--lookback-window",
        "32",
        "--pred-horizon",
        "16",
        "--num-epochs",
        str(KILL_EPOCHS),
        "--patience",
        "50",
        "--n-workers",
        "1",
        "--no-analysis",
        "--output-dir",
        str(out),
    ]
    # A shell starts background jobs with SIGINT ignored and children inherit that (Python then
    # installs no KeyboardInterrupt handler): give the sweep the disposition a terminal's has.
    with process_group(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as proc:
        deadline = time.monotonic() + 300
        while not [d for d in _in_flight_dirs(out) if 1 <= _epochs_done(d) <= KILL_EPOCHS - 4]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    # the command's own words: one line; besides it only timestamped log records (Dask's
    # shutdown warnings), never a traceback
    lines = [line for line in stderr.splitlines() if line.strip() and not LOG_RECORD.match(line)]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in stderr, stderr[-3000:]
    with SweepLock(out):
        pass
    # workers ignore SIGINT; the one in flight may finish its epochs while the cluster closes
    [run_dir] = [p.parent for p in out.glob("logs/**/checkpoint_last.pt")]
    stopped_at, checkpoint_mtime = _checkpoint_epoch(run_dir), (run_dir / "checkpoint_last.pt").stat().st_mtime_ns
    run_cli(args, check=True)
    [record] = read_results(out)
    assert record["status"] == "completed" and stopped_at >= 1
    if stopped_at < KILL_EPOCHS:
        assert record["resumed_from_epoch"] >= stopped_at
    else:  # finished while the cluster closed: not trained again
        assert (run_dir / "checkpoint_last.pt").stat().st_mtime_ns == checkpoint_mtime
    assert _contiguous(out, record) == list(range(1, KILL_EPOCHS + 1))


# --experiment-timeout of the hung-experiment test: it applies to every experiment, so it must be
# large for healthy work (paper's tiny run trains in ~3-5 s here, ~15 s with the cores shared: the
# earlier 10 s timed a healthy run out under load); the hang itself lasts DDRSA_FAULT_HANG_S (1 h)
HUNG_TIMEOUT_S = 45


@pytest.mark.slow
@pytest.mark.reliability
def test_hung_experiment_times_out_and_the_others_complete(tmp_path, prefect_server):
    """gru_basic hangs (fault) next to a healthy paper run on one worker: gru_basic fails with
    "timed out" no earlier than --experiment-timeout after its attempt began, is not retried,
    and paper completes."""
    out = tmp_path / "hung"
    t0 = time.monotonic()
    proc = run_cli(
        [
            *SWEEP,
            "--datasets",
            "turbofan",
            "--models",
            "paper",
            "gru_basic",
            *TINY,
            "--n-workers",
            "1",
            "--gpus-per-experiment",
            "0.5",
            "--experiment-timeout",
            str(HUNG_TIMEOUT_S),
            "--no-analysis",
            "--output-dir",
            str(out),
        ],
        env={"DDRSA_INJECT_FAULT": "hang:gru_basic:*", "DDRSA_ATTEMPT_LOG": str(tmp_path / "a.log")},
    )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert time.monotonic() - t0 < HUNG_TIMEOUT_S + 300
    records = {r["model"]: r for r in read_results(out)}
    assert records["paper"]["status"] == "completed", records["paper"]
    assert records["gru_basic"]["status"] == "failed" and "timed out" in records["gru_basic"]["error"]
    hung = [a for a in read_attempt_log(tmp_path / "a.log") if "gru_basic" in a["name"]]
    assert len(hung) == 1  # a timeout is not retried
    failed_at = dt.datetime.fromisoformat(records["gru_basic"]["finished_at"]).timestamp()
    # the task clock starts a moment before the attempt line (gpu_slot, start_over_if_stale)
    assert failed_at - hung[0]["t"] >= HUNG_TIMEOUT_S - 5, (failed_at, hung)  # the timeout, not sooner


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
    proc = run_cli(
        [*SWEEP, "--data-source", "real", "--output-dir", str(tmp_path / "never")],
        env={"DDRSA_DATA_DIR": str(tmp_path / "no-such-folder")},
    )
    assert_one_line_error(proc, "no-such-folder")
    assert not (tmp_path / "never").exists()


def _broken_cmapss(tmp_path: Path, corrupt) -> Path:
    from ddrsa.data.synthetic import write_synthetic_cmapss

    folder = tmp_path / "data" / "cmapss"
    write_synthetic_cmapss(folder, "FD001", n_units=6)
    train = folder / "train_FD001.txt"
    train.write_text(corrupt(train.read_text()))
    return tmp_path / "data"


@pytest.mark.parametrize(
    "corrupt,needle",
    [
        (lambda t: t.rstrip("\n").rsplit(" ", 7)[0] + "\n", "train_FD001"),  # truncated
        (lambda t: t.replace("\n", "\n1 9 0.1 0.2 100 abc" + " 1" * 20 + "\n", 1), "train_FD001"),  # not a number
        (lambda t: "\n".join(" ".join(l.split()[:20]) for l in t.splitlines()) + "\n", "train_FD001"),  # columns
    ],
)
def test_malformed_data_file(tmp_path, corrupt, needle):
    data_dir = _broken_cmapss(tmp_path, corrupt)
    proc = run_cli(
        [
            *SWEEP,
            "--datasets",
            "turbofan",
            "--models",
            "paper",
            "--data-source",
            "real",
            "--output-dir",
            str(tmp_path / "never"),
        ],
        env={"DDRSA_DATA_DIR": str(data_dir)},
    )
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


@pytest.mark.slow
@pytest.mark.reliability
def test_resumed_deterministic_run_ends_like_an_uninterrupted_one(tmp_path):
    """`--deterministic` training SIGKILLed after some epochs and run again ends with the same
    losses and test metrics as a run never interrupted (weights, optimiser, scheduler, dropout
    RNG, early-stopping counters and the shuffle all resume)."""
    n = 8
    base = [
        "-m",
        "ddrsa.train",
        "--dataset",
        "turbofan",
        "--model",
        "gru_basic",
        "--dropout",
        "0.3",
        "--num-epochs",
        str(n),
        "--patience",
        "3",
        "--data-source",
        "synthetic",
        "--max-units",
        "12",
        "--window-stride",
        "4",
        "--lookback-window",
        "32",
        "--pred-horizon",
        "16",
        "--deterministic",
        "--quiet",
    ]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run_cli([*base, "--output-dir", str(whole)], check=True)
    with process_group(
        [*base, "--output-dir", str(resumed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        deadline = time.monotonic() + 300
        while not 2 <= _epochs_done(resumed) <= n - 3:
            assert proc.poll() is None and time.monotonic() < deadline, "training ended before the kill"
            time.sleep(0.02)
        crash(proc)
    killed_at = _epochs_done(resumed)
    assert 2 <= killed_at < n and not (resumed / "test_metrics.json").exists()
    checkpointed = _checkpoint_epoch(resumed)
    before = json.loads((resumed / "training_log.json").read_text())["epochs"][:checkpointed]
    assert [e["epoch"] for e in before] == list(range(1, checkpointed + 1))
    run_cli([*base, "--output-dir", str(resumed)], check=True)
    # the second process resumed from the checkpoint: epochs 1..checkpointed were not trained
    # again (a deterministic restart from zero has the same losses but not the same seconds)
    after = json.loads((resumed / "training_log.json").read_text())["epochs"]
    assert after[:checkpointed] == before

    def losses(folder):
        log = json.loads((folder / "training_log.json").read_text())
        return [(e["epoch"], e["train_loss"], e["val_loss"], e["learning_rate"]) for e in log["epochs"]], log[
            "best_epoch"
        ]

    (a, best_a), (b, best_b) = losses(whole), losses(resumed)
    assert best_a == best_b and [e[0] for e in a] == [e[0] for e in b]
    np.testing.assert_allclose([e[1:] for e in b], [e[1:] for e in a], rtol=0, atol=1e-6)
    m_a, m_b = (json.loads((f / "test_metrics.json").read_text()) for f in (whole, resumed))
    keys = [k for k, v in m_a.items() if isinstance(v, float) and k != "train_seconds"]
    assert "rul_rmse" in keys and "concordance_index" in keys
    np.testing.assert_allclose([m_b[k] for k in keys], [m_a[k] for k in keys], rtol=0, atol=1e-6)


def test_results_journal_loses_nothing_and_file_stays_whole(tmp_path):
    """all_results.json is compacted at intervals; every record is in the fsynced journal at
    once, a reopened store (after a kill) replays it, a torn last line is skipped."""
    from ddrsa.sweep.results import JOURNAL, ResultsStore

    store = ResultsStore(tmp_path, min_interval_s=3600)
    for i in range(5):
        store.upsert({"experiment_id": f"e{i}", "index": i, "status": "completed"})
        assert read_results(tmp_path) == [{"experiment_id": "e0", "index": 0, "status": "completed"}]
    with open(tmp_path / JOURNAL, "a") as fh:
        fh.write('{"experiment_id": "e9", "ind')  # killed mid-append
    # a new sweep process (the old one SIGKILLed) replays the journal into the file
    again = ResultsStore(tmp_path)
    assert [r["experiment_id"] for r in read_results(tmp_path)] == [f"e{i}" for i in range(5)]
    assert not (tmp_path / JOURNAL).exists()
    again.upsert({"experiment_id": "e2", "index": 2, "status": "failed"})  # upsert, not append
    again.close()
    records = read_results(tmp_path)
    assert len(records) == 5 and records[2]["status"] == "failed" and not (tmp_path / JOURNAL).exists()
