"""Issue 28 end to end on a generated fleet whose wear drives the hazard: `check`, a two-model sweep
on the file with --refit, `score` on a later snapshot of the same units, and the `ddrsa-score` flow
publishing its artifacts on a real Prefect server. The riskiest scored units must be the ones the
generator made riskiest."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import read_results, run_cli
from tests.fleet_fixtures import make_fleet, true_risk

pytestmark = pytest.mark.slow
N_UNITS, TRAIN_STEPS, LATER_STEPS, HORIZON = 24, 100, 130, 16


@pytest.fixture(scope="module")
def fleet_sweep(tmp_path_factory, prefect_server):
    root = tmp_path_factory.mktemp("fleet-e2e")
    df, _ = make_fleet(N_UNITS, TRAIN_STEPS, seed=11)
    table = root / "pumps.csv"
    df.to_csv(table, index=False)
    out = root / "sweep"
    env = {"PREFECT_API_URL": prefect_server, "DDRSA_TORCH_THREADS": "1"}
    check = run_cli(["-m", "ddrsa.data", "check", str(table)], env=env, timeout=120)
    sweep = run_cli(["flows/sweep.py", "--datasets", str(table), "--models", "gru_basic", "lstm_basic",
                     "--num-epochs", "6", "--lookback-window", "16", "--pred-horizon", str(HORIZON),
                     "--learning-rates", "0.01", "--refit", "--n-workers", "1", "--output-dir", str(out)],
                    env=env, timeout=900)
    return root, table, out, check, sweep, env


def test_check_sweep_refit_score_finds_the_riskiest_units(fleet_sweep, tmp_path):
    root, table, out, check, sweep, env = fleet_sweep
    assert check.returncode == 0 and f"units {N_UNITS}" in check.stdout, check.stderr
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    records = read_results(out)
    assert sorted(r["model"] for r in records) == ["gru_basic", "lstm_basic"]
    assert all(r["status"] == "completed" and r["run_dir"].startswith("logs/pumps/") for r in records)
    package = out / "packages" / "pumps"
    assert (package / "weights.pt").is_file() and f"model package pumps: {package}" in sweep.stdout

    later, state = make_fleet(N_UNITS, LATER_STEPS, seed=11)
    snapshot = tmp_path / "pumps-later.csv"
    later.to_csv(snapshot, index=False)
    scores_csv = tmp_path / "scores.csv"
    scored = run_cli(["-m", "ddrsa.score", "--model", str(package), "--data", str(snapshot),
                      "--output", str(scores_csv)], env=env, timeout=120)
    assert scored.returncode == 0, scored.stderr
    assert scored.stderr.strip().startswith(f"scored {N_UNITS} units of pumps-later.csv")
    scores = pd.read_csv(scores_csv)
    window = HORIZON // 4
    truth = true_risk(state, window)
    predicted = scores.set_index("unit")[f"p_fail_within_{window}"]
    rho = pd.Series(truth).rank().corr(predicted.rank())
    top_true = sorted(truth, key=truth.get, reverse=True)[:4]
    top_scored = scores["unit"].head(8).tolist()
    assert rho > 0.6, (rho, top_true, top_scored)
    assert len(set(top_true) & set(top_scored)) >= 3, (top_true, top_scored)

    # a cached re-run: the unchanged file trains nothing again
    again = run_cli(["flows/sweep.py", "--datasets", str(table), "--models", "gru_basic", "lstm_basic",
                     "--num-epochs", "6", "--lookback-window", "16", "--pred-horizon", str(HORIZON),
                     "--learning-rates", "0.01", "--n-workers", "1", "--no-analysis", "--output-dir", str(out)],
                    env=env, timeout=600)
    assert again.returncode == 0 and "(2 cached)" in again.stdout, again.stdout[-2000:]


def test_score_flow_publishes_the_units_at_risk(fleet_sweep, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.score import ddrsa_score

    root, table, out, _, sweep, _ = fleet_sweep
    assert sweep.returncode == 0
    result = ddrsa_score(model_dir=str(out / "packages" / "pumps"), data_path=str(table),
                         output_dir=str(tmp_path / "scores"), top_n=5)
    assert result["n_units"] == N_UNITS
    scores = pd.read_csv(tmp_path / "scores" / "pumps-latest.csv")
    with get_client(sync_client=True) as client:
        arts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["ddrsa-fleet-risk-pumps", "ddrsa-fleet-survival-pumps"])))}
    assert set(arts) == {"ddrsa-fleet-risk-pumps", "ddrsa-fleet-survival-pumps"}
    table_rows = arts["ddrsa-fleet-risk-pumps"].data
    rows = table_rows if isinstance(table_rows, list) else __import__("json").loads(table_rows)
    assert [r["unit"] for r in rows] == scores["unit"].head(5).tolist()
    assert np.allclose([r["expected_time_to_failure"] for r in rows], scores["expected_time_to_failure"].head(5),
                       rtol=1e-5)
    assert "data:image/png;base64," in arts["ddrsa-fleet-survival-pumps"].data
