"""Uncertainty of an accuracy: a seeded percentile-bootstrap interval over the evaluated questions.

An accuracy measured on n questions moves with which questions were drawn; resampling the questions with
replacement (`resamples` times) and taking the central `level` share of the resampled accuracies gives its
interval. The resampled question indices depend only on (seed, n), so every method scored on the same questions
is resampled identically (paired), and a rerun gives the same interval.
"""
from __future__ import annotations

import numpy as np

from cacovid_lib.io_utils import KitInputError


def bootstrap_means(outcomes, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of the per-question outcomes (n,) -> (resamples,).
    Outcomes are 0/1 (correct or not), or per-question shares (e.g. correct in 2 of 3 seeds = 0.667)."""
    values = np.asarray(outcomes, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise KitInputError(f"bootstrap: expected a non-empty vector of per-question outcomes, got shape {values.shape}")
    if resamples < 1:
        raise KitInputError(f"bootstrap: resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))  # (resamples, n)
    return values[idx].mean(1)


def bootstrap_interval(outcomes, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(low, high): the central `level` percentile interval of the bootstrapped mean of `outcomes` (n,)."""
    if not 0 < level < 1:
        raise KitInputError(f"bootstrap: level must lie in (0, 1), got {level}")
    means = bootstrap_means(outcomes, resamples, seed)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def accuracy_with_interval(outcomes, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """{"accuracy", "ci_low", "ci_high"} of per-question outcomes (n,)."""
    low, high = bootstrap_interval(outcomes, level, resamples, seed)
    return {"accuracy": float(np.mean(np.asarray(outcomes, dtype=float))), "ci_low": low, "ci_high": high}
