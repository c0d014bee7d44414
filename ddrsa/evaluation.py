"""A model's predictions and metrics on a split kept on the training device (ddrsa/device.py Split)."""
from __future__ import annotations

import numpy as np
import torch

from ddrsa.config import ExperimentConfig
from ddrsa.device import Split, autocast
from ddrsa.metrics import (RANKED_METRICS, VAL_LOSS, benchmark_metrics, evaluate, survival_from_logits,
                           val_benchmark_metrics, val_key)

EVAL_BATCH = 4096


@torch.inference_mode()
def predict_logits(model, split: Split, device: torch.device, amp: bool) -> torch.Tensor:
    """Logits (N, L) in float32 on the device, in large batches."""
    model.eval()
    out = []
    with autocast(device, amp):
        for start in range(0, len(split), EVAL_BATCH):
            x, mask = split.batch(slice(start, start + EVAL_BATCH))
            out.append(model(x, mask).float())
    return torch.cat(out)


def validation_loss(model, loss_fn, split: Split, device, amp) -> float:
    """The training objective `loss_fn` on the whole split (one float)."""
    logits = predict_logits(model, split, device, amp)
    return float(loss_fn(logits, split.event_index, split.censored))


def validation_metrics(model, loss_fn, split: Split, windows, device, config: ExperimentConfig) -> dict:
    """Validation metrics of the loaded (best) checkpoint, through the same `evaluate` as the test
    metrics: `val_loss` (the training objective) and `val_<name>` for each ranked metric
    (steps for RUL errors, unitless otherwise). The analysis ranks configurations on these."""
    logits = predict_logits(model, split, device, config.amp)
    out = {VAL_LOSS: float(loss_fn(logits, split.event_index, split.censored))}
    survival = survival_from_logits(logits.cpu().numpy())
    scores = evaluate(survival, windows.event_index, windows.censored, windows.unit)
    out.update({val_key(m): scores[m] for m in RANKED_METRICS})
    if config.dataset == "turbofan":  # the benchmark protocol on validation units (cmapss-benchmark ranks on it)
        out.update(val_benchmark_metrics(survival, windows.rul, windows.unit))
    return out


def metrics_on_test(model, data, device, config: ExperimentConfig) -> tuple[dict, dict]:
    """(metrics, predictions) of `model` on the dataset's test split (and its benchmark windows, if
    any): metrics as `evaluate` names them plus data_source/data_version; predictions hold the test
    survival curves (N, L) and labels as numpy arrays."""
    test = Split.from_windows(data.test, device)
    survival = survival_from_logits(predict_logits(model, test, device, config.amp).cpu().numpy())
    metrics = evaluate(survival, data.test.event_index, data.test.censored, data.test.unit)
    metrics["data_source"] = data.data_source
    metrics["data_version"] = data.data_version
    predictions = {"test_survival": survival, "test_event_index": np.asarray(data.test.event_index),
                   "test_censored": np.asarray(data.test.censored), "test_unit": np.asarray(data.test.unit)}
    if data.benchmark is not None and len(data.benchmark):
        bench = Split.from_windows(data.benchmark, device)
        bench_surv = survival_from_logits(predict_logits(model, bench, device, config.amp).cpu().numpy())
        metrics.update(benchmark_metrics(bench_surv, data.benchmark.rul))
    return metrics, predictions
