"""Who won and how sure (reports/winners.py), the progress description and the result line
(flows/progress_lines.py): pure functions, checked against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from flows.progress_lines import progress_description
from reports.winners import answers, answers_table, interval_text


def _row(model, rank, rmse, c, n=1, bs=64, lr=0.001, ci=None, dataset="azure_pm", subset=None):
    low, high = ci or (math.nan, math.nan)
    return {
        "dataset": dataset,
        "subset": subset,
        "model": model,
        "rank": rank,
        "batch_size": bs,
        "learning_rate": lr,
        "lambda_param": 0.75,
        "nasa_weight": 0.1,
        "dropout": 0.1,
        "n_seeds": n,
        "rul_rmse": rmse,
        "rul_rmse_ci_low": math.nan,
        "rul_rmse_ci_high": math.nan,
        "concordance_index": c,
        "concordance_index_ci_low": low,
        "concordance_index_ci_high": high,
        "selected_on": "validation",
        "data_source": "real",
    }


def test_winner_runner_up_margin_and_varying_hyperparameters():
    # the km yardstick ranks first on validation here: it is shown as the baseline, never as the winner
    board = pd.DataFrame(
        [
            _row("km", 1, 30.0, 0.7),
            _row("gru_basic", 2, 20.0, 0.8, bs=64),
            _row("gru_basic", 3, 21.5, 0.78, bs=128),
            _row("lstm_basic", 4, 19.0, 0.79, bs=64),
        ]
    )
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


@pytest.mark.parametrize(
    "counts,total,elapsed,expected",
    [
        (
            {"completed": 10, "cached": 2, "failed": 1, "diverged": 1},
            60,
            310.0,
            "12 of 60 done: 10 completed (2 cached), 1 failed, 1 diverged; 48 remaining, about 25 min left "
            "(31 s per experiment so far)",
        ),
        (
            {"completed": 2, "cached": 2},
            60,
            3.0,
            "2 of 60 done: 2 completed (2 cached), 0 failed, 0 diverged; 58 remaining, time left not known yet "
            "(no experiment finished in this run)",
        ),
        (
            {"completed": 59, "failed": 1},
            60,
            600.0,
            "60 of 60 done: 59 completed (0 cached), 1 failed, 0 diverged; finished",
        ),
        (
            {"completed": 1},
            3,
            40.0,
            "1 of 3 done: 1 completed (0 cached), 0 failed, 0 diverged; 2 remaining, about 80 s "
            "left (40 s per experiment so far)",
        ),
    ],
)
def test_progress_description(counts, total, elapsed, expected):
    assert progress_description(counts, total, elapsed) == expected


# ------------------------------------------------------------------ log lines (flows/progress_lines.py)
def _record(**extra):
    base = {
        "status": "completed",
        "name": "turbofan/paper/bs64_s1",
        "attempts": 1,
        "train_seconds": 12.4,
        "test_split": "held-out",
        "metrics": {"rul_rmse": 22.031, "val_rul_rmse": 22.114, "concordance_index": 0.6123, "benchmark_rmse": 53.51},
    }
    return {**base, **extra}


def test_result_line_names_every_number():
    from flows.progress_lines import result_line

    # held-out units: the literature's protocol does not apply, nothing is called benchmark
    assert result_line(_record()) == (
        "completed turbofan/paper/bs64_s1 (12 s) test RMSE 22.03 (val RMSE 22.11), test C-index 0.612"
    )
    official = result_line(_record(test_split="official"), cached=True, how="fused, ")
    assert official == (
        "completed (cached) turbofan/paper/bs64_s1 (fused, 12 s) test RMSE 22.03 (val RMSE 22.11), "
        "test C-index 0.612, benchmark RMSE 53.51 (official test units, truth capped at 125)"
    )
    # every attempt counted; a failure without a time never reads "0 s"
    assert "(14 s over 3 attempts)" in result_line(_record(attempts=3, attempts_seconds=14.2))
    assert "(12 s in the last of 2 attempts)" in result_line(_record(attempts=2))
    failed = result_line(_record(status="failed", attempts=3, train_seconds=0.0, metrics={}, error="OSError: injected"))
    assert failed == "failed turbofan/paper/bs64_s1 (3 attempts, time not recorded) OSError: injected"
    assert "0 s" not in failed


def test_attempts_seconds_counts_every_attempt(prefect_server, tmp_path):
    """A real task run that fails twice (0.4 s each) and succeeds on attempt 3: the time over every
    attempt is at least the three attempts' sleeps, not only the last one."""
    import time

    from prefect import flow, task
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.progress_lines import attempts_seconds

    calls = []

    @task(retries=2, retry_delay_seconds=0, persist_result=False)
    def flaky() -> float:
        start = time.monotonic()
        time.sleep(0.4)
        calls.append(1)
        if len(calls) < 3:
            raise OSError("transient")
        return attempts_seconds(time.monotonic() - start)

    @flow(persist_result=False)
    def run() -> float:
        return flaky()

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: str(tmp_path)}):
        seconds = run()
    assert len(calls) == 3
    assert seconds >= 1.2 - 0.05, seconds  # three attempts of 0.4 s
    assert attempts_seconds(2.5) == 2.5  # outside a task run: this attempt only
