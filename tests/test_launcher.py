"""The launcher driven with scripted input: menu choice, bad answers, custom grid, scripts."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from deployments import launcher
from tests.conftest import ROOT, assert_one_line_error


def drive(args: list[str], stdin: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    full_env = {**os.environ, "PREFECT_API_URL": "", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "deployments.launcher", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_menu_choice_after_bad_choices_runs_the_preset_locally(tmp_path):
    # 99 (out of range), "banana" (unknown), then 3 = batch-study; bad "where", then local; bad y/n, then y
    proc = drive(["--dry-run", "--output-root", str(tmp_path)], "99\nbanana\n3\nmars\n1\nmaybe\ny\n")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    assert "batch-study" in out and "60 experiments" in out and "1296 experiments" in out
    assert "'99' is not a choice" in out and "'banana' is not a choice" in out
    assert "'mars' is not a choice" in out and "'maybe': answer y or n" in out
    assert out.count("Please try again") == 4
    assert "no measurement yet" in out
    # the real sweep command ran with --dry-run and printed its grid
    assert "running: python flows/sweep.py --preset batch-study --output-dir parallel_experiments/batch-study" in out
    assert out.rstrip().endswith("60 experiments")


def test_custom_grid_with_bad_values_as_a_deployment_run(tmp_path):
    answers = [
        "c",  # custom grid
        "turbofan",  # datasets
        "paper, gru_basic",  # models (comma separated)
        "32 abc",
        "32 64",  # batch sizes: a typo, then fixed
        "",  # learning rates: keep 0.001
        "2",
        "0.5",  # lambda out of range, then fixed
        "",
        "",
        "7 8",  # NASA weights, dropout, seeds
        "0",
        "4",  # epochs: 0 refused
        "2",  # window stride
        str(tmp_path / "custom"),
        "2",
        "y",
    ]  # as a deployment run, confirm
    proc = drive(["--dry-run"], "\n".join(answers) + "\n")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Traceback" not in out + proc.stderr
    assert "'abc' is not an integer" in out
    assert "lambda_param" in out and "less than or equal to 1" in out
    assert "num_epochs" in out
    assert "custom grid: 8 experiments, 4 epochs each" in out
    match = re.search(r"equivalent: prefect deployment run ddrsa-sweep/default --params '(\{.*\})'", out)
    params = json.loads(match.group(1))
    assert params == {
        "preset": "default",
        "output_dir": str(tmp_path / "custom"),
        "datasets": ["turbofan"],
        "models": ["paper", "gru_basic"],
        "batch_sizes": [32, 64],
        "learning_rates": [0.001],
        "lambda_params": [0.5],
        "nasa_weights": [0.1],
        "dropout_rates": [0.1],
        "seeds": [7, 8],
        "num_epochs": 4,
        "window_stride": 2,
    }
    assert "(dry run: nothing submitted)" in out


def test_non_interactive_preset_for_scripts():
    proc = drive(["--preset", "nightly", "--yes", "--dry-run", "--set", "num_epochs=5"], "")
    assert proc.returncode == 0, proc.stderr
    assert "preset nightly: 36 experiments, 5 epochs each" in proc.stdout
    assert "flows/sweep.py --preset nightly --output-dir parallel_experiments/nightly --num-epochs 5" in proc.stdout
    assert "--append-to-history" not in proc.stdout
    assert proc.stdout.rstrip().endswith("36 experiments")


@pytest.mark.parametrize(
    "args, stdin, needle",
    [
        ([], "9\n", "input ended"),  # end of input: a message, nothing started
        (["--yes"], "", "--yes needs --preset"),
        (["--preset", "batch-study", "--yes", "--set", "colour=red"], "", "--set 'colour=red'"),
        (["--preset", "batch-study", "--where", "server", "--yes"], "", "PREFECT_API_URL is not set"),
    ],
)
def test_errors_are_one_line(args, stdin, needle):
    assert_one_line_error(drive(args, stdin), needle)


def test_quit_starts_nothing():
    proc = drive([], "q\n")
    assert proc.returncode == 0 and "nothing started" in proc.stdout


def test_local_command_maps_parameters_to_sweep_flags():
    cmd = launcher.local_command(
        {
            "preset": "nightly",
            "output_dir": "o",
            "append_to_history": True,
            "datasets": ["turbofan"],
            "amp": False,
            "run_analysis": False,
            "fresh": True,
            "learning_rates": [0.001, 0.01],
            "n_workers": 2,
            "compile": True,
            "deterministic": False,
        }
    )
    assert cmd[1:] == [
        "flows/sweep.py",
        "--preset",
        "nightly",
        "--output-dir",
        "o",
        "--datasets",
        "turbofan",
        "--no-amp",
        "--no-analysis",
        "--fresh",
        "--learning-rates",
        "0.001",
        "0.01",
        "--n-workers",
        "2",
        "--compile",
    ]
    names = list(launcher.PRESETS)
    assert launcher.parse_menu_choice(" 2 ", names) == names[1]
    assert launcher.parse_menu_choice("Full-Grid", names) == "full-grid"
    with pytest.raises(ValueError):
        launcher.parse_menu_choice("0", names)
