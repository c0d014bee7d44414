"""A model's predictions and metrics on a split kept on the training device (ddrsa/device.py Split).

`scores_on_test` and `scores_on_validation` turn survival curves into the run's metrics and per-window
predictions; a DDRSA run and every baseline (ddrsa/baselines) go through them, so all are scored alike."""

from __future__ import annotations

import numpy as np
import torch

from ddrsa.config import ExperimentConfig
from ddrsa.device import Split, autocast
from ddrsa.metrics import (
    RANKED_METRICS,
    VAL_LOSS,
    VAL_PREFIX,
    YARDSTICK_METRICS,
    benchmark_metrics,
    evaluate,
    survival_from_logits,
    val_benchmark_metrics,
    val_key,
)
from ddrsa.policy import policy_metrics
from ddrsa.run_predictions import predictions_of

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
    out.update(
        scores_on_validation(
            survival_from_logits(logits.cpu().numpy()), windows, benchmark_protocol=config.dataset == "turbofan"
        )
    )
    return out


def validation_policy(model, split: Split, windows, device, config: ExperimentConfig) -> dict:
    """val_oti_* of the model as loaded (ddrsa/policy.py): what a paused run reports to a search that
    ranks on the intervention criterion (one forward pass over the validation windows)."""
    survival = survival_from_logits(predict_logits(model, split, device, config.amp).cpu().numpy())
    return policy_metrics(survival, windows, VAL_PREFIX)


def scores_on_validation(survival: np.ndarray, windows, *, benchmark_protocol: bool = False) -> dict:
    """`val_<name>` of each RANKED_METRICS and YARDSTICK_METRICS name: `evaluate` of the validation
    curves `survival` (N, L) against the validation windows, the OTI figures per unit
    (ddrsa/policy.py; validation units run to failure) and, with `benchmark_protocol` (C-MAPSS), the
    benchmark protocol on validation units (val_benchmark_*: seeded random truncations, truth capped;
    the cmapss-benchmark preset ranks on it)."""
    scores = evaluate(survival, windows.event_index, windows.censored, windows.unit)
    out = {val_key(m): scores[m] for m in (*RANKED_METRICS, *YARDSTICK_METRICS)}
    out.update(policy_metrics(survival, windows, VAL_PREFIX))
    if benchmark_protocol:
        out.update(val_benchmark_metrics(survival, windows.rul, windows.unit))
    return out


def scores_on_test(
    survival: np.ndarray, benchmark_survival: np.ndarray | None, data, *, run_to_failure: bool
) -> tuple[dict, dict]:
    """(metrics, predictions) of test curves `survival` (N, L) (and the benchmark windows' curves,
    if the dataset has any): metrics as `evaluate` and `benchmark_metrics` name them plus
    data_source/data_version, and the OTI figures per unit when the test units run to failure
    (`run_to_failure`: the held-out split; official C-MAPSS test units stop before the failure);
    predictions the arrays of ddrsa/run_predictions.py."""
    metrics = evaluate(survival, data.test.event_index, data.test.censored, data.test.unit)
    metrics["data_source"] = data.data_source
    metrics["data_version"] = data.data_version
    if run_to_failure:
        metrics.update(policy_metrics(survival, data.test))
    predictions = predictions_of(survival, data.test, "test")
    predictions.update({"test_rul": np.asarray(data.test.rul), "test_end": np.asarray(data.test.end)})
    if benchmark_survival is not None:
        metrics.update(benchmark_metrics(benchmark_survival, data.benchmark.rul))
        predictions.update(predictions_of(benchmark_survival, data.benchmark, "benchmark"))
    return metrics, predictions


def metrics_on_test(model, data, device, config: ExperimentConfig) -> tuple[dict, dict]:
    """(metrics, predictions) of `model` on the dataset's test split (and its benchmark windows, if
    any), through `scores_on_test`."""
    test = Split.from_windows(data.test, device)
    survival = survival_from_logits(predict_logits(model, test, device, config.amp).cpu().numpy())
    bench_surv = None
    if data.benchmark is not None and len(data.benchmark):
        bench = Split.from_windows(data.benchmark, device)
        bench_surv = survival_from_logits(predict_logits(model, bench, device, config.amp).cpu().numpy())
    return scores_on_test(survival, bench_surv, data, run_to_failure=config.test_split == "held-out")
