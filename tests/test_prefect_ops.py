"""What an operator sees in Prefect: final states, run names, task-run logs, artifact keys, retries.

One real sweep (3 tiny experiments on a real local Dask cluster, the session's real Prefect
server) is read back through the Prefect client; the rest are plain functions.
"""

from __future__ import annotations

import itertools
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flows.final_state import sweep_message
from flows.run_ops import run_name, slug, transient_error
from tests.conftest import TINY, read_results, run_cli


def test_only_errors_that_can_pass_are_retried():
    import torch
    from distributed.comm.core import CommClosedError
    from pydantic import ValidationError

    from ddrsa.config import ExperimentConfig
    from ddrsa.errors import DataError, DDRSAError
    from flows.faults import InjectedFault

    try:
        ExperimentConfig(dataset="turbofan", model="paper", learning_rate=-1.0)
    except ValidationError as exc:  # a configuration error as the task meets it
        bad_config = exc
    assert isinstance(bad_config, ValueError)
    transient = [
        OSError(28, "No space left on device"),
        FileNotFoundError("checkpoint_last.pt"),
        CommClosedError("worker gone"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"),
        RuntimeError("CUDA error: out of memory"),
        MemoryError(),
        InjectedFault("injected failure"),
    ]
    permanent = [
        DataError("train_FD001.txt: no rows"),
        DDRSAError("unknown model"),
        bad_config,
        ValueError("lambda must be in [0, 1]"),
        TypeError("bad argument"),
        KeyError("batch_size"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
        TimeoutError("timed out"),
        None,
    ]
    assert [transient_error(e) for e in transient] == [True] * len(transient)
    assert [transient_error(e) for e in permanent] == [False] * len(permanent)


def test_run_names_say_what_ran():
    from deployments.presets import preset_spec

    now = datetime(2026, 11, 29, 19, 5, tzinfo=timezone.utc)
    batch = preset_spec("batch-study")
    n = 1
    for values in batch.grid().values():  # the grid's size, counted by hand
        n *= len(values)
    assert (
        run_name({"preset": "batch-study", "output_dir": "/data/Nightly Out/"}, now)
        == f"batch-study-{n}exp-nightly-out-1129-1905"
    )
    assert n == 60
    grid = {
        "datasets": ["turbofan"],
        "models": ["paper", "gru_basic", "lstm_basic"],
        "batch_sizes": [32, 64],
        "seeds": [1, 2],
    }
    assert run_name({**grid, "output_dir": "runs"}, now) == "sweep-12exp-runs-1129-1905"
    assert len(list(itertools.product(*grid.values()))) == 12
    # a parameter the grid refuses: the name still comes (the run then fails with its own message)
    assert run_name({"models": ["no_such_model"], "output_dir": "runs"}, now) == "sweep-runs-1129-1905"
    assert slug("Full_Grid / GPU#2") == "full-grid-gpu-2"


def test_artifact_keys_are_scoped_by_preset_and_folder(tmp_path):
    from flows.analysis import artifact_scope, scoped_key
    from flows.grid import progress_key

    def key(preset, folder, name="best-configurations"):
        return scoped_key(artifact_scope(preset, tmp_path / folder), name)

    # a deployment's folder is named like its preset: the scope is the preset
    nightly, full = key("nightly", "nightly"), key("full-grid", "full-grid")
    assert (nightly, full) == ("ddrsa-best-configurations-nightly", "ddrsa-best-configurations-full-grid")
    # a fault drill with the same preset into another folder has keys of its own (issue 32, point 3)
    drill = key("quick-comparison", "fault drill")
    assert (
        drill == "ddrsa-best-configurations-quick-comparison-fault-drill" != key("quick-comparison", "quick-comparison")
    )
    assert key("quick-comparison", "a") != key("nightly", "a")  # same folder, other preset
    assert key(None, "My Sweep", "sweep-overview") == "ddrsa-sweep-overview-my-sweep"
    assert progress_key("nightly", tmp_path / "nightly") == "ddrsa-sweep-progress-nightly"
    assert progress_key("nightly", tmp_path / "x") != progress_key("full-grid", tmp_path / "x")
    assert all(re.fullmatch(r"[a-z0-9-]+", k) for k in (nightly, full, drill, progress_key(None, tmp_path / "A_B")))


def test_failed_message_counts_and_reasons():
    summary = {"n_experiments": 60, "completed": 55, "cached": 10, "failed": 5, "diverged": 0, "output_dir": "/o"}
    reasons = [f"turbofan/m{i}: DataError: bad {i}" for i in range(5)]
    msg = sweep_message(summary, reasons)
    assert msg.startswith("5 of 60 experiments failed: turbofan/m0: DataError: bad 0; ")
    assert "turbofan/m2" in msg and "turbofan/m3" not in msg and "and 2 more" in msg
    assert (
        sweep_message({**summary, "failed": 0, "completed": 60}, [])
        == "60 completed (10 cached), 0 failed, 0 diverged of 60"
    )


EPOCH_LINE = re.compile(r"epoch (\d+)/2 train (\d+\.\d+) val (\d+\.\d+) lr \S+ (\d+\.\d)s")


@pytest.mark.slow
def test_sweep_state_name_logs_artifacts_and_retries_read_back(tmp_path, prefect_server):
    """paper trains normally; gru_basic raises an injected transient error on attempt 1 (retried,
    completes on attempt 2); lstm_basic raises a DataError (failed at once, 1 attempt). The flow
    run ends Failed with the count and the reason, the command exits 1; the run's name, each
    task run's epoch log lines and the scoped artifacts are read back through the client."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterTaskRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    from flows.faults import read_attempt_log

    out, attempts_log = tmp_path / "ops sweep", tmp_path / "attempts.jsonl"
    proc = run_cli(
        [
            "flows/sweep.py",
            "--preset",
            "default",
            "--datasets",
            "turbofan",
            "--models",
            "paper",
            "gru_basic",
            "lstm_basic",
            "--seeds",
            "1",
            *TINY,
            "--n-workers",
            "1",
            "--gpus-per-experiment",
            "0.5",
            "--output-dir",
            str(out),
        ],
        env={"DDRSA_INJECT_FAULT": "raise:gru_basic:1,dataerror:lstm_basic:*", "DDRSA_ATTEMPT_LOG": str(attempts_log)},
    )
    assert proc.returncode == 1, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "flow run Failed: 1 of 3 experiments failed: turbofan/lstm_basic/" in proc.stdout
    records = {r["model"]: r for r in read_results(out)}
    assert {m: r["status"] for m, r in records.items()} == {
        "paper": "completed",
        "gru_basic": "completed",
        "lstm_basic": "failed",
    }
    assert (records["gru_basic"]["attempts"], records["lstm_basic"]["attempts"]) == (2, 1)
    tried = [(a["name"].split("/")[1], a["attempt"]) for a in read_attempt_log(attempts_log)]
    assert sorted(tried) == [("gru_basic", 1), ("gru_basic", 2), ("lstm_basic", 1), ("paper", 1)]

    with get_client(sync_client=True) as client:
        runs = [
            r
            for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ddrsa-sweep"])))
            if Path(r.parameters.get("output_dir", "")) == out
        ]
        assert len(runs) == 1
        run = runs[0]
        # final state: Failed, how many and why; the summary is the state's data
        assert run.state.type.value == "FAILED"
        assert run.state.message.startswith("1 of 3 experiments failed: turbofan/lstm_basic/")
        assert "DataError: injected data error" in run.state.message or "injected data error" in run.state.message
        # a name that says what ran: preset, size, folder, time
        assert re.fullmatch(r"default-3exp-ops-sweep-\d{4}-\d{4}", run.name), run.name
        tasks = {
            t.name.split("/")[1]: t
            for t in client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
            )
            if "/" in t.name
        }
        assert (tasks["lstm_basic"].run_count, tasks["lstm_basic"].state.type.value) == (1, "FAILED")
        assert (tasks["gru_basic"].run_count, tasks["gru_basic"].state.type.value) == (2, "COMPLETED")
        # per-epoch training lines in each completed task run's logs
        for model in ("paper", "gru_basic"):
            logs = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[tasks[model].id])))
            epochs = [m.groups() for m in (EPOCH_LINE.search(log.message) for log in logs) if m]
            assert [e[0] for e in epochs] == ["1", "2"], [log.message for log in logs]
            history = json.loads((out / records[model]["run_dir"] / "training_log.json").read_text())["epochs"]
            assert [float(e[1]) for e in epochs] == pytest.approx([h["train_loss"] for h in history], abs=1e-4)
            assert all(log.name.startswith("ddrsa") for log in logs if EPOCH_LINE.search(log.message))
        # artifacts on the sweep's own flow run, keys scoped by the preset
        arts = {
            a.key: a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
            )
        }
        assert {"ddrsa-sweep-progress-default-ops-sweep", "ddrsa-sweep-overview-default-ops-sweep"} <= set(arts)
        overview = arts["ddrsa-sweep-overview-default-ops-sweep"].data
        assert '<img alt="model_comparison" src="data:image/png;base64,' in overview
        assert "## Best configuration per dataset" in overview and "| gru_basic " in overview


def test_failed_state_carries_the_summary(tmp_path):
    from flows.final_state import SweepFailed, state_summary, sweep_state

    (tmp_path / "all_results.json").write_text(
        json.dumps(
            [
                {"experiment_id": "a", "name": "turbofan/paper/x", "status": "completed"},
                {
                    "experiment_id": "b",
                    "name": "turbofan/gru_basic/y",
                    "status": "failed",
                    "error": "Task run encountered an exception DataError: no rows\nTraceback ...",
                },
            ]
        )
    )
    summary = {"n_experiments": 2, "completed": 1, "cached": 0, "failed": 1, "diverged": 0, "output_dir": str(tmp_path)}
    state = sweep_state(summary, {"a", "b"})
    assert state.is_failed() and state.message.startswith(
        "1 of 2 experiments failed: turbofan/gru_basic/y: DataError: no rows (1 completed"
    )
    assert isinstance(state.data, SweepFailed) and state_summary(state) == summary
    done = sweep_state({**summary, "failed": 0, "completed": 2})
    assert done.is_completed() and state_summary(done)["completed"] == 2
    with pytest.raises(ValueError, match="bad folder"):
        from prefect.states import Failed

        state_summary(Failed(data=ValueError("bad folder")))
