"""Resampling statistics: stratified bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval and the number of images behind it."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    @classmethod
    def exact(cls, value: float, n: int) -> Estimate:
        """A quantity known without sampling error (a count): its interval is the value."""
        return cls(float(value), float(value), float(value), n)


def stratified_resamples(labels: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Bootstrap index sets ``[n_resamples, n]`` that keep every class's size fixed.

    Resampling within classes keeps the class balance of the evaluation set, so a metric's
    spread reflects image-level variation, not a changing class mix.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    columns = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        columns.append(members[rng.integers(0, len(members), (n_resamples, len(members)))])
    return np.concatenate(columns, axis=1)


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap samples (NaNs ignored)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bias_corrected_interval(
    samples: np.ndarray, value: float, confidence: float
) -> tuple[float, float]:
    """Efron's bias-corrected (BC) percentile interval.

    For statistics whose bootstrap distribution is shifted away from the estimate (cluster
    indices: duplicated images shrink within-class scatter), the plain percentile interval can
    miss the estimate entirely; BC moves the percentiles by the observed shift.
    """
    finite = samples[np.isfinite(samples)]
    below = (np.sum(finite < value) + 0.5 * np.sum(finite == value)) / len(finite)
    z0 = norm.ppf(np.clip(below, 1 / (len(finite) + 1), len(finite) / (len(finite) + 1)))
    z = norm.ppf((1 + confidence) / 2)
    low, high = norm.cdf([2 * z0 - z, 2 * z0 + z]) * 100
    return float(np.percentile(finite, low)), float(np.percentile(finite, high))


def bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    bias_corrected: bool = False,
) -> Estimate:
    """Point estimate and stratified-bootstrap CI of ``statistic``.

    ``statistic`` takes index sets ``[B, n]`` and returns one value per row (vectorised), so it
    is called once for the point estimate (the identity index set) and once for all resamples.
    """
    n = len(labels)
    value = float(statistic(np.arange(n)[None, :])[0])
    samples = statistic(stratified_resamples(labels, n_resamples, seed))
    if bias_corrected:
        low, high = bias_corrected_interval(samples, value, confidence)
    else:
        low, high = percentile_interval(samples, confidence)
    return Estimate(value, low, high, n)


def stratified_subsample(labels: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """Indices of at most ``max_samples`` images, each class kept in proportion (all if fewer)."""
    labels = np.asarray(labels)
    if len(labels) <= max_samples:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        take = max(1, round(len(members) * max_samples / len(labels)))
        keep.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(keep))


@dataclass(frozen=True)
class PairedDifference:
    """Metric of model A minus model B on the same images, with CI and a two-sided p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def paired_bootstrap(
    statistic_a: Callable[[np.ndarray], np.ndarray],
    statistic_b: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired stratified bootstrap of ``A - B``: both models see the same resampled images.

    The p-value is the bootstrap estimate of P(difference has the other sign), doubled
    (the percentile-interval test that inverts the CI), floored at 1 / (n_resamples + 1).
    """
    n = len(labels)
    identity = np.arange(n)[None, :]
    observed = float(statistic_a(identity)[0] - statistic_b(identity)[0])
    idx = stratified_resamples(labels, n_resamples, seed)
    diffs = statistic_a(idx) - statistic_b(idx)
    low, high = percentile_interval(diffs, confidence)
    finite = diffs[np.isfinite(diffs)]
    tail = min(np.mean(finite <= 0), np.mean(finite >= 0)) if len(finite) else 1.0
    p_value = float(min(1.0, max(2 * tail, 1 / (n_resamples + 1))))
    return PairedDifference(observed, low, high, p_value, n)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; controls the family-wise error rate)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()
