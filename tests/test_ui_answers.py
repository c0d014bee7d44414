"""Who won and how sure (reports/winners.py), the progress description and the result line
(flows/run_ops.py): pure functions, checked against hand-computed values."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from flows.run_ops import progress_description
from reports.winners import answers, answers_table, interval_text


def _row(model, rank, rmse, c, n=1, bs=64, lr=0.001, ci=None, dataset="azure_pm", subset=None):
    low, high = ci or (math.nan, math.nan)
    return {"dataset": dataset, "subset": subset, "model": model, "rank": rank, "batch_size": bs,
            "learning_rate": lr, "lambda_param": 0.75, "nasa_weight": 0.1, "dropout": 0.1, "n_seeds": n,
            "rul_rmse": rmse, "rul_rmse_ci_low": math.nan, "rul_rmse_ci_high": math.nan, "concordance_index": c,
            "concordance_index_ci_low": low, "concordance_index_ci_high": high, "selected_on": "validation",
            "data_source": "real"}


def test_winner_runner_up_margin_and_varying_hyperparameters():
    # the km yardstick ranks first on validation here: it is shown as the baseline, never as the winner
    board = pd.DataFrame([_row("km", 1, 30.0, 0.7), _row("gru_basic", 2, 20.0, 0.8, bs=64),
                          _row("gru_basic", 3, 21.5, 0.78, bs=128), _row("lstm_basic", 4, 19.0, 0.79, bs=64)])
    [a] = answers(board)
    assert a.varying == ["batch_size"]  # learning rate, lambda, ... constant: not shown
    assert (a.winner["model"], a.winner["batch_size"]) == ("gru_basic", 64)
    assert (a.runner_up["model"], a.runner_up["batch_size"]) == ("gru_basic", 128)  # baselines never win
    assert a.baseline["model"] == "km" and a.floor == ""
    [row] = answers_table([a])
    assert row["verdict"] == "winner" and row["batch size"] == 64 and "learning rate" not in row
    assert row["margin"] == "-1.500 test RMSE (plain difference of means, not paired; negative: winner better)"
    assert row["test RMSE (steps)"] == "20.000 (1 seed: no interval)"
    assert row["best baseline"] == "km: test RMSE 30.000 (1 seed: no interval)"


def test_no_model_beats_the_floor():
    # the km floor is better on test RMSE: no winner
    board = pd.DataFrame([_row("gru_basic", 1, 31.0, 0.8), _row("km", 2, 30.0, 0.7)])
    [a] = answers(board)
    assert a.floor.startswith("test RMSE 31.000 is not below the age-only floor (km) 30.000")
    assert answers_table([a])[0]["verdict"].startswith("no model beats the floor: ")
    # Azure PM's C-index 0.565 with one seed: not told apart from chance
    [a] = answers(pd.DataFrame([_row("gru_basic", 1, 20.0, 0.565)]))
    assert "within 0.1 of chance" in a.floor
    # an interval that reaches 0.5: chance; one above it: a winner
    [a] = answers(pd.DataFrame([_row("gru_basic", 1, 20.0, 0.58, n=3, ci=(0.49, 0.67))]))
    assert "reaches chance" in a.floor
    [a] = answers(pd.DataFrame([_row("gru_basic", 1, 20.0, 0.58, n=3, ci=(0.55, 0.61))]))
    assert a.floor == ""
    # a C-index clearly above chance without an interval: a winner
    [a] = answers(pd.DataFrame([_row("gru_basic", 1, 20.0, 0.75)]))
    assert a.floor == ""


def test_interval_text_says_what_the_interval_covers():
    r = pd.Series({"rul_rmse": 20.0, "rul_rmse_ci_low": 19.0, "rul_rmse_ci_high": 21.0, "n_seeds": 3})
    assert interval_text(r, "rul_rmse") == "20.000 [19.000, 21.000] (95% t-interval over 3 seeds)"
    r["rul_rmse_boot_low"], r["rul_rmse_boot_high"] = 18.5, 21.5
    assert interval_text(r, "rul_rmse") == "20.000 [18.500, 21.500] (95% bootstrap over test units, 3 seeds)"
    assert interval_text(pd.Series({"rul_rmse": 20.0, "n_seeds": 1}), "rul_rmse") == "20.000 (1 seed: no interval)"


@pytest.mark.parametrize("counts,total,elapsed,expected", [
    ({"completed": 10, "cached": 2, "failed": 1, "diverged": 1}, 60, 310.0,
     "12 of 60 done: 10 completed (2 cached), 1 failed, 1 diverged; 48 remaining, about 25 min left "
     "(31 s per experiment so far)"),
    ({"completed": 2, "cached": 2}, 60, 3.0,
     "2 of 60 done: 2 completed (2 cached), 0 failed, 0 diverged; 58 remaining, time left not known yet "
     "(no experiment finished in this run)"),
    ({"completed": 59, "failed": 1}, 60, 600.0, "60 of 60 done: 59 completed (0 cached), 1 failed, 0 diverged; finished"),
    ({"completed": 1}, 3, 40.0, "1 of 3 done: 1 completed (0 cached), 0 failed, 0 diverged; 2 remaining, about 80 s "
                                "left (40 s per experiment so far)"),
])
def test_progress_description(counts, total, elapsed, expected):
    assert progress_description(counts, total, elapsed) == expected
