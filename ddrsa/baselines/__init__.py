"""Yardstick models named like any model (`--model gbm|cox|km`), fitted instead of trained, scored
by the DDRSA run's code, never "best DDRSA configuration" (ddrsa/config.py BASELINE_MODELS).

gbm: gradient-boosted trees on window summaries; cox: penalised Cox PH on the same summaries;
km: Kaplan-Meier lifetimes conditioned on the window's age (the floor). `ddrsa.trainer.train`
hands a baseline's config to `fit_baseline`.
"""

from .run import BASELINES, fit_baseline

__all__ = ["BASELINES", "fit_baseline"]
