"""The single-run command end to end: outputs, real data, resume, bad input.

Bugs tried (`python benchmarks/mutation.py NAME` puts each into a temporary copy; the claiming
test fails with it and passes without): resume-ignores-checkpoint (the trainer starts from epoch
1 instead of its checkpoint: test_interrupted_run_resumes_from_last_checkpoint)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import ROOT, assert_one_line_error, run_cli

TINY_RUN = [
    "--data-source",
    "synthetic",
    "--max-units",
    "12",
    "--window-stride",
    "8",
    "--lookback-window",
    "32",
    "--pred-horizon",
    "16",
]
METRIC_KEYS = {
    "rul_mae",
    "rul_rmse",
    "concordance_index",
    "nasa_score",
    "nasa_score_mean",
    "integrated_brier_score",
    "n_test_units",
    "n_test_windows",
    "data_source",
}


def test_single_run_writes_every_output(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        [
            "-m",
            "ddrsa.train",
            "--dataset",
            "turbofan",
            "--model",
            "gru_basic",
            "--num-epochs",
            "2",
            *TINY_RUN,
            "--output-dir",
            str(out),
            "--create-visualization",
        ],
        check=True,
    )
    for name in ("config.json", "training_log.json", "checkpoint_best.pt", "checkpoint_last.pt", "test_metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics)
    assert metrics["data_source"] == "synthetic"
    assert {"benchmark_rmse", "benchmark_nasa_score", "benchmark_comparable"} <= set(metrics)
    assert 0.0 <= metrics["concordance_index"] <= 1.0
    log = json.loads((out / "training_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2] and log["status"] == "completed"
    # validation metrics of the BEST checkpoint: its validation loss is the best epoch's
    assert {"val_loss", "val_rul_mae", "val_rul_rmse", "val_concordance_index", "val_nasa_score"} <= set(metrics)
    assert metrics["val_loss"] == pytest.approx(log["best_val_loss"], rel=1e-5)
    assert 0.0 <= metrics["val_rul_mae"] <= metrics["val_rul_rmse"] and metrics["val_nasa_score"] >= 0.0
    assert metrics["val_concordance_index"] is None or 0.0 <= metrics["val_concordance_index"] <= 1.0
    ckpt = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "best_score", "config"} <= set(ckpt)
    assert ckpt["config"]["model"] == "gru_basic"
    run_cli(["-m", "reports.run_charts", str(out)], check=True)  # the charts, from the run folder
    for chart in (
        "loss_curves",
        "predicted_vs_true",
        "hazard_survival",
        "intervention_trade_off",
        "unit_timelines",
    ):  # the last two: reports/policy_charts.py
        png = out / "plots" / f"{chart}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
        assert (out / "plots" / f"{chart}.html").is_file()
    assert json.loads(proc.stdout)["status"] == "completed"


def test_azure_single_run(tmp_path):
    out = tmp_path / "azure"
    run_cli(
        [
            "-m",
            "ddrsa.train",
            "--dataset",
            "azure_pm",
            "--model",
            "lstm_basic",
            "--num-epochs",
            "1",
            *TINY_RUN,
            "--output-dir",
            str(out),
        ],
        check=True,
    )
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert "benchmark_rmse" not in metrics and metrics["n_test_windows"] > 0


@pytest.mark.realdata
def test_single_run_on_real_fd001(tmp_path):
    out = tmp_path / "fd001"
    run_cli(
        [
            "-m",
            "ddrsa.train",
            "--dataset",
            "turbofan",
            "--subset",
            "FD001",
            "--model",
            "paper",
            "--num-epochs",
            "1",
            "--data-source",
            "real",
            "--window-stride",
            "16",
            "--output-dir",
            str(out),
        ],
        check=True,
    )
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["data_source"] == "real"
    assert metrics["benchmark_n_units"] == 100  # one window per test_FD001 unit, truth from RUL_FD001.txt
    assert metrics["benchmark_comparable"] is False  # horizon 64 < 125


def test_interrupted_run_resumes_from_last_checkpoint(tmp_path):
    out = tmp_path / "resume"
    args = [
        sys.executable,
        "-m",
        "ddrsa.train",
        "--model",
        "paper",
        "--num-epochs",
        "8",
        "--patience",
        "50",
        "--data-source",
        "synthetic",
        "--max-units",
        "12",
        "--lookback-window",
        "32",
        "--pred-horizon",
        "16",
        "--output-dir",
        str(out),
        "--quiet",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    epochs = 0
    while time.monotonic() < deadline and proc.poll() is None:
        log = out / "training_log.json"
        if log.exists():
            try:
                epochs = len(json.loads(log.read_text())["epochs"])
            except (json.JSONDecodeError, KeyError):
                pass
            if epochs >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "checkpoint_last.pt", weights_only=True)["epoch"]
    assert 1 <= killed_at < 8
    before = json.loads((out / "training_log.json").read_text())["epochs"]
    done = run_cli(args[1:], check=True)
    log = json.loads((out / "training_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == list(range(1, 9))
    assert json.loads(done.stdout)["status"] == "completed"
    # epochs up to the checkpoint were not re-run: their records (losses, learning rate and the
    # measured seconds, which a re-run would change) are the first process's, byte for byte
    kept = [e for e in before if e["epoch"] <= killed_at]
    assert [e["epoch"] for e in kept] == list(range(1, killed_at + 1))
    assert log["epochs"][:killed_at] == kept


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--model", "nope"], "unknown model"),
        (["--model", "../../etc"], "unknown model"),
        (["--learning-rate", "-0.1"], "learning_rate"),
        (["--batch-size", "0"], "batch_size"),
        (["--batch-size", "1.5"], "batch-size"),
        (["--lambda-param", "1.5"], "lambda_param"),
        (["--dropout", "1.0"], "dropout"),
        (["--dataset", "mars"], "dataset"),
        (["--subset", "FD009"], "subset"),
    ],
)
def test_bad_input_one_line_error_and_no_run_folder(tmp_path, flags, needle):
    out = tmp_path / "never"
    proc = run_cli(["-m", "ddrsa.train", *flags, "--output-dir", str(out)])
    assert_one_line_error(proc, needle)
    assert not out.exists()


def test_missing_real_data_names_the_file(tmp_path):
    out = tmp_path / "never"
    proc = run_cli(
        ["-m", "ddrsa.train", "--data-source", "real", "--output-dir", str(out)],
        env={"DDRSA_DATA_DIR": str(tmp_path / "empty")},
    )
    assert_one_line_error(proc, "train_FD001")
    assert not out.exists()


def test_truncated_data_file_is_a_clear_error(tmp_path):
    data = tmp_path / "data" / "cmapss"
    data.mkdir(parents=True)
    from ddrsa.data.synthetic import write_synthetic_cmapss

    write_synthetic_cmapss(data, "FD001")
    train = next(p for p in data.iterdir() if p.name.startswith("train_FD001"))
    if train.suffix == ".gz":
        import gzip

        text = gzip.decompress(train.read_bytes()).decode()
        train.unlink()
        train = train.with_suffix("")
    else:
        text = train.read_text()
    train.write_text(text.rstrip("\n").rsplit(" ", 5)[0] + "\n")  # cut the last line short
    out = tmp_path / "never"
    proc = run_cli(
        ["-m", "ddrsa.train", "--data-source", "real", "--output-dir", str(out)],
        env={"DDRSA_DATA_DIR": str(tmp_path / "data")},
    )
    assert_one_line_error(proc, "train_FD001")
    assert not out.exists()
