"""reports/uncertainty.py: the bootstrap resamples units (not windows), pinned to ddrsa.metrics and
to a brute-force loop over resamples."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ddrsa.metrics import benchmark_metrics, evaluate
from reports.uncertainty import BENCHMARK_RMSE, TEST_RMSE, bootstrap_interval, paired_bootstrap, unit_sums


def fake_testset(rng: np.random.Generator, n_units: int = 12, horizon: int = 20, unit_offset: int = 0) -> dict:
    """Truth of one test set: each unit has 3-9 windows with event index l (censored at the horizon
    when l >= horizon); benchmark: one window per unit with a true RUL up to 200."""
    units, ev, cens, target = [], [], [], []
    for u in range(n_units):
        end = int(rng.integers(2, 2 * horizon))
        for j in range(int(rng.integers(3, 10))):
            l = end + j
            units.append(u + unit_offset)
            ev.append(horizon - 1 if l >= horizon else l)
            cens.append(l >= horizon)
            target.append(min(l, horizon))
    return {
        "test_event_index": np.array(ev),
        "test_censored": np.array(cens),
        "test_unit": np.array(units),
        "benchmark_rul": rng.integers(1, 200, n_units).astype(float),
        "benchmark_unit": np.arange(n_units) + unit_offset,
        "_target": np.array(target, float),
        "_horizon": horizon,
    }


def fake_run(rng: np.random.Generator, truth: dict, bias: float = 0.0, noise: float = 3.0, bench: bool = True) -> dict:
    """One run's predictions on `truth`: logistic S(k) curves whose expected time is near the truth + bias."""

    def curves(target, length):
        return 1.0 / (1.0 + np.exp(np.arange(length)[None, :] - target[:, None]))

    h = truth["_horizon"]
    t = np.clip(truth["_target"] + bias + rng.normal(0, noise, len(truth["_target"])), 0.5, h - 0.5)
    pred = {k: v for k, v in truth.items() if k.startswith("test_")}
    pred["test_survival"] = curves(t, h)
    if bench:
        r = truth["benchmark_rul"]
        tb = np.clip(np.minimum(r, 125) + bias + rng.normal(0, noise, len(r)), 0.5, 140)
        pred.update(benchmark_survival=curves(tb, 150), benchmark_rul=r, benchmark_unit=truth["benchmark_unit"])
    return pred


def fake_predictions(
    rng: np.random.Generator, n_units: int = 12, bias: float = 0.0, noise: float = 3.0, bench: bool = True
) -> dict:
    return fake_run(rng, fake_testset(rng, n_units), bias, noise, bench)


def test_full_sample_sums_equal_the_recorded_metrics():
    rng = np.random.default_rng(1)
    p = fake_predictions(rng)
    want = evaluate(p["test_survival"], p["test_event_index"], p["test_censored"], p["test_unit"])["rul_rmse"]
    assert unit_sums(p, TEST_RMSE).rmse() == pytest.approx(want, rel=1e-12)
    bench = benchmark_metrics(p["benchmark_survival"], p["benchmark_rul"])["benchmark_rmse"]
    assert unit_sums(p, BENCHMARK_RMSE).rmse() == pytest.approx(bench, rel=1e-12)
    no_bench = {k: v for k, v in p.items() if not k.startswith("benchmark")}
    assert unit_sums(no_bench, BENCHMARK_RMSE) is None


def _duplicated(p: dict) -> dict:
    """Every test window twice (same unit): the same units, twice the windows."""
    return {k: (np.concatenate([v, v]) if k.startswith("test_") else v) for k, v in p.items()}


def test_resampling_is_over_units_not_windows():
    """Duplicating every window leaves the unit bootstrap unchanged (the same units are drawn, each
    unit's share of the error is the same) but narrows a window bootstrap (twice the 'samples')."""
    rng = np.random.default_rng(2)
    truth = fake_testset(rng)
    runs = [fake_run(rng, truth, noise=4.0, bench=False) for _ in range(2)]  # two seeds, one test set
    dup = [_duplicated(p) for p in runs]
    unit = bootstrap_interval({0: [unit_sums(p, TEST_RMSE) for p in runs]})
    unit_dup = bootstrap_interval({0: [unit_sums(p, TEST_RMSE) for p in dup]})
    assert (unit.low, unit.high, unit.value) == pytest.approx((unit_dup.low, unit_dup.high, unit_dup.value), rel=1e-12)
    assert unit.n_units == unit_dup.n_units == 12
    win = bootstrap_interval({0: [unit_sums(p, TEST_RMSE, level="window") for p in runs]})
    win_dup = bootstrap_interval({0: [unit_sums(p, TEST_RMSE, level="window") for p in dup]})
    assert win.value == pytest.approx(win_dup.value)
    width, width_dup = win.high - win.low, win_dup.high - win_dup.low
    assert width_dup < 0.85 * width  # ~1/sqrt(2) narrower
    assert unit.high - unit.low > width  # windows of one unit are not independent evidence


def _gather(p: dict, drawn: np.ndarray, prefix: str) -> dict:
    """The windows of the drawn units (in draw order, repeats included) of one run."""
    idx = np.concatenate([np.flatnonzero(p[f"{prefix}_unit"] == u) for u in drawn])
    return {k: v[idx] for k, v in p.items() if k.startswith(prefix)}


def _brute_force(models: list[dict], n_resamples: int, seed: int, metric: str) -> np.ndarray:
    """(M, B) the metric of each model (mean over its seeds) on each resample, one resample at a
    time through ddrsa.metrics.evaluate / benchmark_metrics; draws as documented in the module."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(models), n_resamples))
    splits = sorted(models[0])
    n_runs = [sum(len(m[s]) for s in splits) for m in models]
    for s in splits:
        prefix = "test" if metric == TEST_RMSE else "benchmark"
        units = np.unique(models[0][s][0][f"{prefix}_unit"])
        idx = rng.integers(0, len(units), size=(n_resamples, len(units)))
        for b in range(n_resamples):
            for i, m in enumerate(models):
                for p in m[s]:
                    g = _gather(p, units[idx[b]], prefix)
                    if metric == TEST_RMSE:
                        v = evaluate(g["test_survival"], g["test_event_index"], g["test_censored"], g["test_unit"])[
                            "rul_rmse"
                        ]
                    else:
                        v = benchmark_metrics(g["benchmark_survival"], g["benchmark_rul"])["benchmark_rmse"]
                    out[i, b] += v / n_runs[i]
    return out


@pytest.mark.parametrize("metric", [TEST_RMSE, BENCHMARK_RMSE])
def test_paired_bootstrap_matches_a_brute_force_loop(metric):
    rng = np.random.default_rng(3)
    n_units, B, seed = 8, 150, 7
    # two split seeds (different held-out units), two seeds each; model b is worse on average
    truth = {s: fake_testset(rng, n_units, unit_offset=100 * s) for s in (0, 1)}
    a = {s: [fake_run(rng, truth[s]) for _ in range(2)] for s in (0, 1)}
    b = {s: [fake_run(rng, truth[s], bias=2.0) for _ in range(2)] for s in (0, 1)}
    brute = _brute_force([a, b], B, seed, metric)
    sums = [{s: [unit_sums(p, metric) for p in m[s]] for s in m} for m in (a, b)]
    paired = paired_bootstrap(sums[0], sums[1], n_resamples=B, seed=seed)
    diff = brute[0] - brute[1]
    undefined = ~np.isfinite(diff)  # a resample that drew no unit with an event in the horizon
    assert paired.n_undefined == undefined.sum()
    diff = diff[~undefined]
    assert paired.low == pytest.approx(np.quantile(diff, 0.025), rel=1e-9, abs=1e-9)
    assert paired.high == pytest.approx(np.quantile(diff, 0.975), rel=1e-9, abs=1e-9)
    assert paired.share_better == pytest.approx((diff < 0).mean())
    assert paired.mean_resampled == pytest.approx(diff.mean(), rel=1e-9)
    assert paired.n_units == 2 * n_units
    single = bootstrap_interval(sums[1], n_resamples=B, seed=seed)
    one = _brute_force([b], B, seed, metric)[0]
    assert single.low == pytest.approx(np.quantile(one[np.isfinite(one)], 0.025), rel=1e-9)
    assert single.value == pytest.approx(np.mean([unit_sums(p, metric).rmse() for s in b for p in b[s]]))


def test_paired_sign_and_share_follow_the_better_model():
    rng = np.random.default_rng(4)
    good = fake_predictions(rng, 30, noise=1.0)
    bad = dict(
        good,
        test_survival=np.clip(good["test_survival"] * 0.6, 0, 1),
        benchmark_survival=np.clip(good["benchmark_survival"] * 0.6, 0, 1),
    )
    g, b = {0: [unit_sums(good, BENCHMARK_RMSE)]}, {0: [unit_sums(bad, BENCHMARK_RMSE)]}
    p = paired_bootstrap(g, b)
    assert p.difference < 0 and p.high < 0 and p.share_better > 0.99
    q = paired_bootstrap(b, g)
    assert q.difference == pytest.approx(-p.difference) and q.low > 0 and q.share_better < 0.01


def test_two_thousand_resamples_of_a_hundred_units_are_fast():
    rng = np.random.default_rng(5)
    runs = {0: [unit_sums(fake_predictions(rng, 100), TEST_RMSE) for _ in range(5)]}
    t0 = time.perf_counter()
    for _ in range(10):
        bootstrap_interval(runs, n_resamples=2000)
    assert (time.perf_counter() - t0) / 10 < 0.5
