"""report.html tells who won and how sure (issue 32): '1 seed' and no interval where none exists,
the runner-up and the margin, 'no model beats the floor' when the km yardstick is better, only
literature-protocol runs under "Benchmark vs literature", constant hyperparameters as one sentence."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from analysis_fixtures import write_known_folder  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The known folder with azure_pm cut to one seed, a km yardstick on turbofan that beats every
    DDRSA model on test RMSE, and benchmark metrics on held-out units (not the literature's protocol)."""
    from reports.report import run_analysis

    root = tmp_path_factory.mktemp("answers")
    records = write_known_folder(root)
    keep = [r for r in records if not (r["dataset"] == "azure_pm" and r["seed"] != 1)]
    km = []
    for r in keep:
        if (
            r["dataset"] == "turbofan"
            and r["model"] == "lstm_basic"
            and r["batch_size"] == 64
            and r["learning_rate"] == 0.001
            and r["status"] == "completed"
        ):
            k = copy.deepcopy(r)
            k.update(model="km", experiment_id="f" + r["experiment_id"][1:], name=r["name"].replace("lstm_basic", "km"))
            k["metrics"].update(rul_rmse=5.0 + 0.1 * r["seed"], val_rul_rmse=30.0)
            km.append(k)
    for r in keep:
        if r["dataset"] == "turbofan" and r["status"] == "completed":
            r["test_split"] = "held-out"
            r["metrics"].update(
                benchmark_rmse=55.7,
                benchmark_rmse_uncapped=60.0,
                benchmark_nasa_score=900.0,
                benchmark_n_units=10,
                benchmark_comparable=True,
            )
    (root / "all_results.json").write_text(json.dumps(keep + km))
    res = run_analysis(root)
    return root, res, (root / "report.html").read_text()


def _card(page: str, where: str) -> str:
    head = page.split("<h2>Leaderboard</h2>")[0]
    return head.split(f"<h3>{where} ")[1].split("<div class='card'>")[0]


def test_one_seed_has_no_interval_and_says_1_seed(report):
    _, _, page = report
    azure = _card(page, "azure_pm")
    assert "1 seed;" in azure and "1 seeds" not in page
    assert "(1 seed: no interval)" in azure and "t-interval" not in azure  # nothing claimed that does not exist
    assert "Winner: <b>lstm_basic (learning rate 0.01)</b>" in azure
    assert "Runner-up: lstm_basic (learning rate 0.001)" in azure and "Margin: " in azure
    assert "plain difference of means, not paired" in azure


def test_a_winner_below_the_km_floor_is_not_a_winner(report):
    _, _, page = report
    turbofan = _card(page, "turbofan FD001")
    assert "No model beats the floor" in turbofan and "Winner:" not in turbofan
    assert "age-only floor (km)" in turbofan and "Best baseline: km" in turbofan
    assert "lstm_basic" in turbofan  # the best DDRSA configuration is still named, as not a winner


def test_benchmark_lists_only_the_literature_protocol(report):
    _, res, page = report
    section = page.split("<h2>Benchmark vs literature</h2>")[1].split("<h2>")[0]
    assert "Runs scored on held-out training units are left out" in section
    assert "55.7" not in section and "held-out</td>" not in section  # no held-out numbers beside published ones
    assert res.benchmark == []  # nor on the terminal


def test_constant_hyperparameters_are_one_sentence_and_behind_the_toggle(report):
    _, res, page = report
    assert "nasa_loss_impact" not in res.charts  # NASA weight 0.1 everywhere: no chart of placeholders
    assert "Constant in this sweep, so not charted: lambda 0.75, NASA weight 0.1, dropout 0.1." in res.notes
    assert "show every column" in page
    best = page.split("<h2>Best configurations per model and criterion</h2>")[1].split("<h2>")[0]
    assert "<th>batch size</th>" in best and "<th class=more>lambda</th>" in best  # varying first, constant hidden
    from reports.leaderboard import COLUMNS

    lambda_column = 1 + [field for field, _, _ in COLUMNS].index("lambda_param")
    assert f"#leaderboard tr>:nth-child({lambda_column})" in page  # lambda's column hidden until the toggle
