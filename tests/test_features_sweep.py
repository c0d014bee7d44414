"""Advertised sweep features end to end (issue 18): the launcher's real local run, the default CPU
cluster layout, an azure_pm sweep, the progress artifact read back through the Prefect client,
cache invalidation on data and code versions, `--fresh`, `flows/analysis.py` from the command
line with `--run-label`, and the no-flag default run (`python flows/sweep.py`, what `make run` starts).

One tiny two-experiment grid (turbofan read from C-MAPSS files written into a temporary
DDRSA_DATA_DIR, azure_pm synthetic) is run several times on one output folder; the reruns call the
flow in this process so that the code version can be patched where the flow computes it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ddrsa.data import synthetic
from tests.conftest import ROOT, read_results, run_cli

pytestmark = pytest.mark.slow

GRID = {
    "datasets": ["turbofan", "azure_pm"],
    "models": ["paper"],
    "max_units": 12,
    "window_stride": 8,
    "lookback_window": 32,
    "pred_horizon": 16,
    "num_epochs": 1,
    "n_workers": 1,
}


def _progress_artifact(output_dir: Path):
    """The `ddrsa-sweep-progress-default-<folder>` artifact (scoped by the preset and the folder) of
    the (last) flow run that wrote `output_dir`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.analysis import artifact_scope, scoped_key

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[scoped_key(artifact_scope("default", output_dir), "sweep-progress")])
            )
        )
        ours = [
            a
            for a in arts
            if Path(client.read_flow_run(a.flow_run_id).parameters.get("output_dir", "")).resolve() == output_dir
        ]
    assert ours, "no ddrsa-sweep-progress artifact for this sweep"
    return max(ours, key=lambda a: a.updated)


def _by_dataset(out: Path) -> dict:
    return {r["dataset"]: r for r in read_results(out)}


def _log(out: Path, record: dict) -> dict:
    return json.loads((out / record["run_dir"] / "training_log.json").read_text())


def _sweep(out: Path, **extra) -> dict:
    """The flow in this process, same experiments as the launcher's run (preset default + GRID)."""
    from flows.sweep import ddrsa_sweep

    return ddrsa_sweep(preset="default", output_dir=str(out), run_analysis=False, **GRID, **extra)


def test_launcher_run_cache_invalidation_fresh_and_analysis_cli(tmp_path, prefect_server, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "sweep"
    synthetic.write_synthetic_cmapss(data / "cmapss", "FD001", n_units=12, seed=0)
    monkeypatch.setenv("DDRSA_DATA_DIR", str(data))  # turbofan from these files; no azure_pm files
    monkeypatch.setenv("DDRSA_DATA_SOURCE", "auto")

    # 1. the launcher starts a real local run (python flows/sweep.py), default cluster layout
    sets = [f"{k}={json.dumps(v)}" for k, v in GRID.items() if k != "n_workers"] + [
        f"output_dir={json.dumps(str(out))}"
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployments.launcher",
            "--preset",
            "default",
            "--yes",
            *[a for s in sets for a in ("--set", s)],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "running: python flows/sweep.py --preset default" in proc.stdout
    assert "2 completed (0 cached), 0 failed, 0 diverged of 2" in proc.stdout
    first = _by_dataset(out)
    assert {r["status"] for r in first.values()} == {"completed"}
    assert first["turbofan"]["metrics"]["data_source"] == "real"  # read from DDRSA_DATA_DIR
    assert first["azure_pm"]["metrics"]["data_source"] == "synthetic"  # an azure_pm sweep
    assert first["azure_pm"]["metrics"]["n_test_windows"] > 0 and "benchmark_rmse" not in first["azure_pm"]["metrics"]
    assert all(r["peak_gpu_mb"] is None and r["device"] == "cpu" for r in first.values())  # not 0 on CPU
    # default layout (no --n-workers): one worker per core pair
    n_workers = max(1, (os.cpu_count() or 2) // 2)
    manifest = json.loads((out / "experiment_manifest.json").read_text())
    assert json.dumps(manifest).count(f"{n_workers} CPU worker(s)") == 1
    assert {r["worker"] for r in first.values()} <= {f"cpu{i}" for i in range(n_workers)}
    assert (out / "report.html").is_file() and (out / "best_configurations.csv").is_file()
    loss1 = _log(out, first["turbofan"])["epochs"][0]["train_loss"]
    progress = _progress_artifact(out.resolve())
    assert progress.type == "progress" and progress.data == 100.0
    assert progress.description.startswith("2 of 2 done: 2 completed (") and progress.description.endswith(
        "0 failed, 0 diverged; finished"
    )

    # 2. a changed data file retrains the experiments that read it; the unchanged azure_pm is cached
    synthetic.write_synthetic_cmapss(data / "cmapss", "FD001", n_units=12, seed=1)
    summary = _sweep(out)
    assert (summary["completed"], summary["cached"]) == (2, 1)
    second = _by_dataset(out)
    assert second["azure_pm"] == first["azure_pm"]
    tf1, tf2 = first["turbofan"], second["turbofan"]
    assert tf2["metrics"]["data_version"] != tf1["metrics"]["data_version"]
    assert tf2["resumed_from_epoch"] == 0, "resumed the checkpoint trained on the old data"
    loss2 = _log(out, tf2)["epochs"][0]["train_loss"]
    assert loss2 != loss1

    # 3. another code version retrains everything (computed by the flow; patched where it is called).
    # Run with the nightly deployment's parameters (preset nightly, append_to_history) on the same
    # grid: the analysis subflow appends the bests to the history, labelled with the preset.
    import flows.session
    import flows.sweep
    from deployments.presets import preset_parameters

    monkeypatch.setattr(flows.session, "code_version", lambda: "0000feedface0000")
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("logs/**/test_metrics.json")}
    nightly = preset_parameters("nightly")
    assert nightly["append_to_history"] is True
    summary = flows.sweep.ddrsa_sweep(**{**nightly, **GRID, "seeds": [42], "output_dir": str(out)})
    assert (summary["completed"], summary["cached"]) == (2, 0)
    assert summary["analysis"]["history_lines_added"] == 2
    nightly_lines = [json.loads(line) for line in (out / "sweep_history.jsonl").read_text().splitlines()]
    assert {(h["dataset"], h["run_label"]) for h in nightly_lines} == {("turbofan", "nightly"), ("azure_pm", "nightly")}
    third = _by_dataset(out)
    assert all(r["resumed_from_epoch"] == 0 for r in third.values())
    assert all(p.stat().st_mtime_ns != t for p, t in mtimes.items())
    assert _log(out, third["turbofan"])["epochs"][0]["train_loss"] == pytest.approx(loss2)  # same data, same seed

    # 4. --fresh: earlier results ignored, folders emptied and retrained (a stray file disappears)
    stray = out / third["turbofan"]["run_dir"] / "stray.txt"
    stray.write_text("from an earlier run")
    summary = _sweep(out, fresh=True)
    assert (summary["completed"], summary["cached"]) == (2, 0)
    assert not stray.exists()
    assert all(r["resumed_from_epoch"] == 0 and r["status"] == "completed" for r in read_results(out))
    from flows.sweep_cli import build_parser

    assert build_parser().parse_args(["--fresh"]).fresh is True

    # 5. flows/analysis.py from the command line, with --append-to-history and --run-label
    proc = run_cli(
        ["flows/analysis.py", "--output-dir", str(out), "--append-to-history", "--run-label", "cli-label"],
        check=True,
        timeout=300,
    )
    assert "2 completed, 0 failed, 0 diverged, 0 pending" in proc.stdout and "report: " in proc.stdout
    # the winner per dataset (chosen on validation, test metrics) under the summary line
    assert re.search(
        r"^  turbofan( FD00\d)? \(data: real\): paper \(bs .*test RMSE [\d.]+.*; selected on "
        r"validation RMSE [\d.]+; test RMSE (\[[\d., ]+\] )?over test units.*$",  # + its interval
        proc.stdout,
        re.M,
    ), proc.stdout[-2000:]
    assert re.search(r"^  azure_pm \(data: synthetic\): ", proc.stdout, re.M)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:  # the run is named for what it analysed
        names = [
            fr.name
            for fr in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["ddrsa-analysis"])))
        ]
    assert any(n.startswith("analysis-cli-label-") for n in names), names
    history = [json.loads(line) for line in (out / "sweep_history.jsonl").read_text().splitlines()]
    assert history[:2] == nightly_lines
    assert {(h["dataset"], h["run_label"]) for h in history[2:]} == {
        ("turbofan", "cli-label"),
        ("azure_pm", "cli-label"),
    }
    # --append-to-history on the sweep's command line sets the same flow parameter
    from flows.sweep_cli import preflight

    params = preflight(
        [
            "--datasets",
            "turbofan",
            "--models",
            "paper",
            "--data-source",
            "synthetic",
            "--max-units",
            "12",
            "--append-to-history",
            "--output-dir",
            str(tmp_path / "cli"),
        ]
    )
    assert params["append_to_history"] is True and preflight(["--dry-run"]) is None
    assert (out / "analysis_plots" / "model_comparison.png").is_file()


def test_no_flag_default_run(tmp_path, prefect_server):
    """`python flows/sweep.py` with no flags from a fresh folder, no data: the `default` preset
    (6 models x 2 datasets, 2 epochs, every 32nd window) on synthetic data, into ./parallel_experiments."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "DDRSA_DATA_DIR": str(tmp_path / "no-data"), "DDRSA_DATA_SOURCE": "auto"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "sweep.py")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = work / "parallel_experiments"
    assert "12 completed (0 cached), 0 failed, 0 diverged of 12" in proc.stdout
    records = read_results(out)
    assert len(records) == 12 and {r["status"] for r in records} == {"completed"}
    assert {(r["dataset"], r["model"]) for r in records} == {
        (d, m)
        for d in ("turbofan", "azure_pm")
        for m in ("lstm_basic", "lstm_deep", "gru_basic", "gru_deep", "transformer_basic", "transformer_deep")
    }
    assert {r["num_epochs"] for r in records} == {2} and {r["metrics"]["data_source"] for r in records} == {"synthetic"}
    manifest = json.loads((out / "experiment_manifest.json").read_text())
    assert {e["config"]["window_stride"] for e in manifest["experiments"]} == {32}
    assert (out / "report.html").is_file() and (out / "summary_statistics.csv").is_file()
    assert "SYNTHETIC" in (out / "report.html").read_text().upper()
