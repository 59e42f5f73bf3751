"""Interval and test machinery shared by every analysis.

Which method an interval uses is chosen per statistic (and said in its docstring); every one
of them was checked for coverage by simulation (``benchmarks/calibration.py``). The building
blocks here:

- :class:`Estimate`, whose interval always contains its value (:func:`contained`), and a NaN
  value always has a NaN interval;
- resampling *units*: an image, or a whole group (patient, lesion) when the dataset names one,
  so intervals and tests see correlated images as one unit (cluster resampling);
- the proportion toolkit: Wilson score intervals with the Korn-Graubard effective sample size
  (clustered data) and MOVER combinations of them (Zou & Donner 2008);
- the delete-a-group jackknife (Quenouille-Tukey; Shao & Tu 1995, ch. 2) for statistics that
  resampling *with* replacement biases (duplicated images shrink scatter, rank, distances);
- the stratified (cluster) bootstrap, as index arrays (:func:`bootstrap`) or as resample
  counts streamed in chunks (:func:`resample_counts`), never as copies of the features;
- the paired sign-flip permutation test (exact level, p = (b + 1) / (B + 1)) and Holm's
  step-down correction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.stats import norm, t

#: resample counts are streamed in chunks of this many resamples (bounded memory)
CHUNK = 64


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval and the number of images behind it.

    ``ci_low <= value <= ci_high`` always holds for a finite value; a NaN value has a NaN
    interval; a statistic that reports no interval has NaN bounds around a finite value.
    """

    value: float
    ci_low: float
    ci_high: float
    n: int

    @classmethod
    def exact(cls, value: float, n: int) -> Estimate:
        """A quantity known without sampling error (a count): its interval is the value."""
        return cls(float(value), float(value), float(value), n)

    @classmethod
    def without_interval(cls, value: float, n: int) -> Estimate:
        """A statistic for which no valid interval is known (the analysis says why)."""
        return cls(float(value), float("nan"), float("nan"), n)


def contained(value: float, low: float, high: float, n: int) -> Estimate:
    """An :class:`Estimate` whose interval contains its value.

    A NaN value gets a NaN interval. A resampling interval that misses its own point (it can:
    percentiles of a skewed or discrete distribution) is extended to the point, which only
    widens it.
    """
    value = float(value)
    if not np.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), n)
    if not (np.isfinite(low) and np.isfinite(high)):
        return Estimate(value, float("nan"), float("nan"), n)
    return Estimate(value, min(float(low), value), max(float(high), value), n)


def z_value(confidence: float) -> float:
    return float(norm.ppf((1 + confidence) / 2))


# ---------------------------------------------------------------------------------- units


def unit_codes(n: int, groups: np.ndarray | None) -> np.ndarray:
    """The resampling unit of each of ``n`` images: its group's code, or its own index."""
    if groups is None:
        return np.arange(n)
    return np.unique(np.asarray(groups), return_inverse=True)[1]


def unit_strata(labels: np.ndarray, units: np.ndarray) -> np.ndarray:
    """The stratum (class) of every unit: its images' most common label."""
    labels = np.asarray(labels)
    n_units = int(units.max()) + 1 if len(units) else 0
    votes = np.zeros((n_units, int(labels.max()) + 1 if len(labels) else 1))
    np.add.at(votes, (units, labels), 1)
    return votes.argmax(axis=1)


# ---------------------------------------------------------------------------- proportions


def wilson(
    p: float, n_eff: float, confidence: float = 0.95, *, critical: float | None = None
) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``p`` observed on ``n_eff`` (effective)
    trials (Wilson 1927; recommended for small n and p near 0 or 1 by Brown, Cai & DasGupta
    2001). It always contains ``p`` and stays inside [0, 1]. ``critical`` replaces the normal
    quantile (e.g. by Student's t when the variance behind ``n_eff`` is itself estimated)."""
    if not np.isfinite(p) or n_eff <= 0:
        return float("nan"), float("nan")
    z2 = (critical if critical is not None else z_value(confidence)) ** 2
    centre = (p + z2 / (2 * n_eff)) / (1 + z2 / n_eff)
    half = np.sqrt(z2 * p * (1 - p) / n_eff + z2 * z2 / (4 * n_eff**2)) / (1 + z2 / n_eff)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def effective_size(successes: np.ndarray, units: np.ndarray | None) -> tuple[float, float]:
    """A proportion of 0/1 (or fractional) outcomes and its effective sample size.

    Without units: ``(mean, n)``. With units (clusters of correlated images), the
    Korn-Graubard (1998) effective size ``p (1 - p) / var`` with the cluster-robust (ratio
    estimator) variance, capped at ``n``; when ``p`` is 0 or 1 the data cannot show how alike a
    cluster's images are, so every cluster counts once (``n_eff`` = number of clusters).
    """
    x = np.asarray(successes, dtype=np.float64)
    n = len(x)
    if n == 0:
        return float("nan"), 0.0
    p = float(x.mean())
    if units is None:
        return p, float(n)
    _, codes = np.unique(units, return_inverse=True)
    g = int(codes.max()) + 1
    if g < 2:
        return p, 1.0
    totals = np.bincount(codes, weights=x, minlength=g)
    sizes = np.bincount(codes, minlength=g).astype(np.float64)
    var = g / (g - 1) * np.sum((totals - p * sizes) ** 2) / n**2
    if p <= 0 or p >= 1 or var <= 0:
        return p, float(g)
    return p, float(min(n, p * (1 - p) / var))


def proportion(
    successes: np.ndarray, units: np.ndarray | None = None, confidence: float = 0.95
) -> Estimate:
    """A proportion with its Wilson interval (cluster-adjusted effective size with units)."""
    p, n_eff = effective_size(successes, units)
    return contained(p, *wilson(p, n_eff, confidence), len(successes))


# ------------------------------------------------------------------------------ jackknife


def jackknife_blocks(
    labels: np.ndarray, groups: np.ndarray | None = None, n_blocks: int = 30, seed: int = 0
) -> np.ndarray:
    """The block (0..G-1) of every image for a delete-a-group jackknife: units (images or
    whole groups) are shuffled within each class and dealt round-robin, so every block holds
    a like share of every class and a group never spans two blocks."""
    labels = np.asarray(labels)
    units = unit_codes(len(labels), groups)
    strata = unit_strata(labels, units)
    n_units = len(strata)
    n_blocks = int(min(n_blocks, n_units))
    rng = np.random.default_rng(seed)
    block_of_unit = np.empty(n_units, dtype=np.int64)
    offset = 0
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        block_of_unit[members] = (offset + np.arange(len(members))) % n_blocks
        offset += len(members)
    return block_of_unit[units]


def jackknife(value: float, replicates: np.ndarray, n: int, confidence: float = 0.95) -> Estimate:
    """Delete-a-group jackknife interval ``value +- t_{G-1} * se`` from the ``G`` replicates
    computed with one block left out each: se^2 = (G - 1) / G * sum (theta_g - mean)^2
    (Quenouille 1956, Tukey 1958; the grouped form: Kott 2001). Resamples without
    replacement, so no image is ever duplicated; blocks of whole groups make it
    cluster-robust. Valid for smooth statistics; what it covers is the statistic's expected
    value at this sample size."""
    replicates = np.asarray(replicates, dtype=np.float64)
    finite = replicates[np.isfinite(replicates)]
    g = len(finite)
    if not np.isfinite(value) or g < 2:
        return Estimate(float(value), float("nan"), float("nan"), n)
    se = float(np.sqrt((g - 1) / g * np.sum((finite - finite.mean()) ** 2)))
    half = float(t.ppf((1 + confidence) / 2, g - 1)) * se
    return contained(value, value - half, value + half, n)


def chunks(n: int, size: int = 8192) -> Iterator[slice]:
    """Row slices of at most ``size`` rows (float64 work on bounded pieces of float32 data)."""
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def grouped_sums(x: np.ndarray, codes: np.ndarray, n_codes: int) -> np.ndarray:
    """``[n_codes, D]`` float64 sums of the rows of ``x`` with each code, in chunks (no
    float64 copy of ``x``)."""
    out = np.zeros((n_codes, x.shape[1]))
    for part in chunks(len(x)):
        rows = codes[part]
        onehot = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, np.arange(len(rows)))), (n_codes, len(rows))
        )
        out += onehot @ np.asarray(x[part], dtype=np.float64)
    return out


# ------------------------------------------------------------------------------ bootstrap


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


def resample_counts(
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    chunk: int = CHUNK,
) -> Iterator[np.ndarray]:
    """Stratified bootstrap resamples as counts ``[b, n]`` (float32; how often each image is
    drawn), streamed ``chunk`` resamples at a time. With ``groups``, whole groups are drawn
    (the cluster bootstrap, Davison & Hinkley 1997 sec. 3.8), stratified by class."""
    labels = np.asarray(labels)
    units = unit_codes(len(labels), groups)
    strata = unit_strata(labels, units)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        unit_counts = np.zeros((b, len(strata)), dtype=np.float32)
        rows = np.arange(b)[:, None]
        for m in members:
            np.add.at(unit_counts, (rows, m[rng.integers(0, len(m), (b, len(m)))]), 1.0)
        yield unit_counts[:, units]
        done += b


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap samples (NaNs ignored)."""
    finite = np.asarray(samples)[np.isfinite(samples)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Point estimate and stratified percentile-bootstrap CI of ``statistic`` (images as
    units). For statistics that are smooth functions of image means (a mean, a difference of
    means, a ratio of them).

    ``statistic`` takes index sets ``[B, n]`` and returns one value per row (vectorised), so it
    is called once for the point estimate (the identity index set) and once for all resamples.
    """
    n = len(labels)
    value = float(statistic(np.arange(n)[None, :])[0])
    if not np.isfinite(value):
        return contained(value, np.nan, np.nan, n)
    samples = statistic(stratified_resamples(labels, n_resamples, seed))
    return contained(value, *percentile_interval(samples, confidence), n)


def mean_estimate(
    values: np.ndarray, groups: np.ndarray | None = None, confidence: float = 0.95
) -> Estimate:
    """The mean of per-image values with Student's t interval and the cluster-robust standard
    error (groups as the independent units; Liang & Zeger 1986): one pass, no resampling.
    Simulated on skewed (exponential) values it covers 0.92-0.95 from 40 images or 25 groups
    (``benchmarks/calibration.py``); the percentile bootstrap covered less."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    value = float(values.mean())
    units = unit_codes(n, groups)
    totals = np.bincount(units, weights=values - value)
    g = len(totals)
    if g < 2 or not np.isfinite(value):
        return contained(value, np.nan, np.nan, n)
    se = float(np.sqrt(g / (g - 1) * np.sum(totals**2))) / n
    half = float(t.ppf((1 + confidence) / 2, g - 1)) * se
    return contained(value, value - half, value + half, n)


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


# -------------------------------------------------------------------- paired comparisons


@dataclass(frozen=True)
class PairedDifference:
    """Metric of model A minus model B on the same images, with CI and a two-sided p-value."""

    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int

    def estimate(self) -> Estimate:
        return Estimate(self.difference, self.ci_low, self.ci_high, self.n)


def class_weights(labels: np.ndarray, balanced: bool) -> np.ndarray:
    """Per-image weights that turn a per-image score into a metric: ``1 / n`` (accuracy) or
    ``1 / (K n_c)`` (balanced accuracy: the mean over classes of per-class means)."""
    labels = np.asarray(labels)
    if not balanced:
        return np.full(len(labels), 1 / len(labels))
    counts = np.bincount(labels)
    present = int((counts > 0).sum())
    return 1 / (present * counts[labels])


def sign_flip_test(
    differences: np.ndarray,
    weights: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    n_permutations: int = 9999,
    seed: int = 0,
) -> float:
    """Two-sided paired permutation (sign-flip) test of ``sum(weights * differences) = 0``.

    Under the null that the two models are exchangeable on every image (or, with ``groups``,
    on every group), each unit's difference is equally likely to have either sign; the
    p-value ``(b + 1) / (B + 1)`` (``b`` of ``B`` random sign patterns at least as extreme) has
    exact level (Phipson & Smyth 2010), whatever the number of images. ``differences`` may be
    ``[n]`` or ``[n, P]`` (P comparisons sharing the same sign patterns)."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[:, None] if d.ndim == 1 else d
    contrib = d * np.asarray(weights, dtype=np.float64)[:, None]
    units = unit_codes(len(d), groups)
    per_unit = np.zeros((int(units.max()) + 1, d.shape[1]))
    np.add.at(per_unit, units, contrib)
    observed = np.abs(per_unit.sum(axis=0))
    rng = np.random.default_rng(seed)
    extreme = np.zeros(d.shape[1])
    done = 0
    while done < n_permutations:
        b = min(1024, n_permutations - done)
        signs = rng.integers(0, 2, (b, len(per_unit))).astype(np.float64) * 2 - 1
        extreme += (np.abs(signs @ per_unit) >= observed - 1e-12).sum(axis=0)
        done += b
    p = (extreme + 1) / (n_permutations + 1)
    return p if np.ndim(differences) > 1 else float(p[0])


def _design_effect(values: np.ndarray, units: np.ndarray | None) -> float:
    """Cluster-robust over independent variance of a mean of ``values`` (>= 1); where the
    values do not vary the clusters' likeness is unknown, and the mean cluster size is used."""
    if units is None:
        return 1.0
    _, codes = np.unique(units, return_inverse=True)
    g, n = int(codes.max()) + 1, len(values)
    if g < 2:
        return float(n)
    centred = values - values.mean()
    iid = float(np.sum(centred**2))
    if iid <= 0:
        return n / g
    cluster = g / (g - 1) * float(np.sum(np.bincount(codes, weights=centred) ** 2))
    return max(1.0, cluster / iid)


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    balanced: bool = False,
    n_permutations: int = 9999,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Model A minus model B of a metric that is a (class-balanced) mean of per-image scores
    -- correctness (accuracy, balanced accuracy) or a continuous score (a displacement) -- on
    the same images.

    The interval is Wald's on the per-class differences, stratified by class: for
    correctness each class's 2 x 2 table of agreements gets Agresti & Min's (2005) half count
    per cell in its variance, which keeps width where the models rarely disagree; with groups,
    each class's variance is multiplied by its design effect (cluster-robust / independent).
    The p-value is the sign-flip permutation test's (:func:`sign_flip_test`), exact at any n.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    codes = np.unique(labels, return_inverse=True)[1]
    binary = bool(np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all())
    n = len(a)
    weights = class_weights(codes, balanced)
    difference = float(np.sum(weights * (a - b)))
    variance = 0.0
    for c in np.unique(codes):
        mine = codes == c
        w_c = float(weights[mine].sum())
        d = a[mine] - b[mine]
        n_c = int(mine.sum())
        if binary:
            only_a, only_b = np.sum(d > 0) + 0.5, np.sum(d < 0) + 0.5
            smoothed = n_c + 2
            mean = (only_a - only_b) / smoothed
            var_c = ((only_a + only_b) / smoothed - mean**2) / smoothed
        else:
            var_c = float(np.var(d, ddof=1)) / n_c if n_c > 1 else 0.0
        units = None if groups is None else np.asarray(groups)[mine]
        variance += w_c**2 * var_c * _design_effect(d, units)
    half = z_value(confidence) * float(np.sqrt(variance))
    est = contained(difference, difference - half, difference + half, n)
    p = sign_flip_test(a - b, weights, groups, n_permutations=n_permutations, seed=seed)
    return PairedDifference(est.value, est.ci_low, est.ci_high, float(p), n)


def paired_bootstrap(
    statistic_a: Callable[[np.ndarray], np.ndarray],
    statistic_b: Callable[[np.ndarray], np.ndarray],
    labels: np.ndarray,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Paired stratified bootstrap of ``A - B`` for statistics that are not means of per-image
    scores (AUROC, a spread over prompts): both sides see the same resampled images.

    ``statistic_*`` map index sets ``[B, n]`` to ``B`` values. The p-value is the bootstrap
    estimate of P(difference has the other sign), doubled (the test that inverts the
    percentile interval), floored at 1 / (n_resamples + 1).
    """
    n = len(labels)
    identity = np.arange(n)[None, :]
    observed = float(statistic_a(identity)[0] - statistic_b(identity)[0])
    idx = stratified_resamples(labels, n_resamples, seed)
    diffs = statistic_a(idx) - statistic_b(idx)
    est = contained(observed, *percentile_interval(diffs, confidence), n)
    finite = diffs[np.isfinite(diffs)]
    tail = min(np.mean(finite <= 0), np.mean(finite >= 0)) if len(finite) else 1.0
    p_value = float(min(1.0, max(2 * tail, 1 / (n_resamples + 1))))
    return PairedDifference(est.value, est.ci_low, est.ci_high, p_value, n)


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
