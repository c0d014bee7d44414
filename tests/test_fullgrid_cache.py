"""Re-running a finished sweep submits nothing (issue 14, "Server and scale"): experiments whose
finished record matches the cache key (config + code version + data version) are counted as cached
without a task run; a changed data version still trains. Task runs are read back through the
Prefect client. The flow runs in this process (as in tests/test_features_sweep.py).

Bugs tried (`python benchmarks/mutation.py NAME`, caught): cluster-on-finished-rerun (a re-run
with nothing to submit starts its Dask cluster anyway: test_rerun_of_finished_sweep_starts_no_dask_cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ddrsa.data import synthetic
from tests.conftest import read_results

GRID = {
    "datasets": ["turbofan"],
    "models": ["paper"],
    "seeds": [1, 2],
    "max_units": 12,
    "window_stride": 8,
    "lookback_window": 32,
    "pred_horizon": 16,
    "num_epochs": 1,
    "n_workers": 1,
    "data_source": "real",
}


def _sweep(out: Path):
    """(summary, task runs of this flow run, its progress artifact)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    from flows.sweep import ddrsa_sweep

    state = ddrsa_sweep(preset="default", output_dir=str(out), run_analysis=False, return_state=True, **GRID)
    summary = state.result()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        [progress] = [
            a
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            if a.type == "progress"
        ]
    return summary, task_runs, progress


def test_finished_under_key_needs_a_finished_record_its_key_and_its_result_file(tmp_path):
    from flows.tasks import RESULTS_CACHE, finished_under_key

    key = "ddrsa-0123456789ab-c0de-da7a-f01de12"
    (tmp_path / RESULTS_CACHE).mkdir()
    record = {"experiment_id": "0123456789ab", "status": "completed", "cache_key": key}
    assert not finished_under_key(record, key, tmp_path)  # Prefect holds no result under the key
    (tmp_path / RESULTS_CACHE / key).write_text("{}")
    assert finished_under_key(record, key, tmp_path)
    assert finished_under_key({**record, "status": "diverged"}, key, tmp_path)  # returned, so cached too
    assert not finished_under_key({**record, "status": "failed"}, key, tmp_path)  # raised: never cached
    assert not finished_under_key({**record, "cache_key": key + "x"}, key, tmp_path)  # other code/data/config
    assert not finished_under_key({k: v for k, v in record.items() if k != "cache_key"}, key, tmp_path)
    assert not finished_under_key(None, key, tmp_path)


@pytest.mark.slow
def test_rerun_of_finished_sweep_submits_nothing_and_new_data_retrains(tmp_path, prefect_server, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "sweep"
    synthetic.write_synthetic_cmapss(data / "cmapss", "FD001", n_units=12, seed=0)
    monkeypatch.setenv("DDRSA_DATA_DIR", str(data))

    summary, task_runs, _ = _sweep(out)
    assert (summary["completed"], summary["cached"]) == (2, 0)
    assert len(task_runs) == 2
    first = {r["experiment_id"]: r for r in read_results(out)}
    results_bytes = (out / "all_results.json").read_bytes()

    # the same sweep again: no task run at all, counted as cached in summary, progress and records
    summary, task_runs, progress = _sweep(out)
    assert (summary["completed"], summary["cached"], summary["failed"]) == (2, 2, 0)
    assert task_runs == []
    assert progress.data == 100.0
    assert progress.description == "2 of 2 done: 2 completed (2 cached), 0 failed, 0 diverged; finished"
    assert (out / "all_results.json").read_bytes() == results_bytes
    assert {r["experiment_id"]: r for r in read_results(out)} == first

    # changed data: another data version, so both train again (task runs, new records)
    synthetic.write_synthetic_cmapss(data / "cmapss", "FD001", n_units=12, seed=1)
    summary, task_runs, _ = _sweep(out)
    assert (summary["completed"], summary["cached"]) == (2, 0)
    assert sorted(t.name for t in task_runs) == sorted(r["name"] for r in first.values())
    assert all(t.state.is_completed() and t.state.name != "Cached" for t in task_runs)
    after = {r["experiment_id"]: r for r in read_results(out)}
    assert all(after[k]["metrics"]["data_version"] != first[k]["metrics"]["data_version"] for k in first)
    assert all(after[k]["cache_key"] != first[k]["cache_key"] for k in first)


@pytest.mark.slow
def test_rerun_of_finished_sweep_starts_no_dask_cluster(tmp_path, prefect_server):
    """README, "the same command again on a finished sweep": no Dask cluster when none is left.
    Checked from outside the sweep process: a Dask worker makes its scratch folder under dask's
    temporary-directory (DASK_TEMPORARY_DIRECTORY); the first run's folder shows it does, the
    re-run's stays empty. Bug tried (benchmarks/mutation.py): the cluster started even with
    nothing to submit."""
    from tests.conftest import TINY, run_cli

    out = tmp_path / "sweep"
    args = [
        "flows/sweep.py",
        "--datasets",
        "turbofan",
        "--models",
        "paper",
        *TINY,
        "--n-workers",
        "1",
        "--no-analysis",
        "--output-dir",
        str(out),
    ]
    first_tmp, again_tmp = tmp_path / "dask-first", tmp_path / "dask-again"
    first_tmp.mkdir(), again_tmp.mkdir()
    run_cli(args, env={"DASK_TEMPORARY_DIRECTORY": str(first_tmp)}, check=True)
    assert list(first_tmp.iterdir()), "the first run's workers left no trace: the check below would prove nothing"
    again = run_cli(args, env={"DASK_TEMPORARY_DIRECTORY": str(again_tmp)}, check=True)
    assert "(1 cached)" in again.stdout, again.stdout[-2000:]
    assert list(again_tmp.iterdir()) == [], "the re-run of a finished sweep started Dask workers"
