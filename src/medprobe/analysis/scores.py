"""Test-set classification scores (accuracy, balanced accuracy, macro-F1, AUROC) with
intervals that hold at the boundary.

What every interval here covers: the performance of *this* classifier (fitted probe, zero-shot
prompts) on the population the test images come from; training variation is not included
(few-shot, which draws training sets, adds it: :mod:`medprobe.analysis.probes`). The methods,
chosen by coverage measured in simulation (``benchmarks/calibration.py``):

- accuracy: Wilson score interval (Brown, Cai & DasGupta 2001);
- balanced accuracy: the union of two intervals, each of which fails in one regime where the
  other holds: per-class Agresti-Coull intervals combined by MOVER (Zou & Donner 2008), which
  under-covers with many small classes (0.909 at 20 classes x 10 images), and Wilson's interval
  at the stratified effective size ``b (1 - b) / sum_c p_c (1 - p_c) / (K^2 n_c)`` (recalls
  Laplace-adjusted in the variance, capped at ``n``), which under-covers at heavy imbalance
  (0.901 at 90/10). The union covered 0.938-0.973 in 11 simulated settings; a class recall of
  0/20 or 25/25 still has width;
- macro-F1: Wilson interval at the effective size implied by its jackknife variance (the
  Korn-Graubard construction), so it stays inside [0, 1] and keeps width at F1 = 1;
- AUROC (macro one-vs-rest): score-type interval (Newcombe 2006) with DeLong's variance,
  floored near the boundary by the Hanley-McNeil variance, so a perfect ranking still has
  width.

With groups (patients, lesions), each count is shrunk to its Korn-Graubard effective size
(cluster-robust variance), DeLong's variance sums influences per cluster (Obuchowski 1997).
"""

from __future__ import annotations

import numpy as np

from medprobe.analysis import metrics
from medprobe.analysis.stats import (
    Estimate,
    contained,
    effective_size,
    unit_codes,
    wilson,
    z_value,
)

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


def point_scores(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """The four metrics' values, without intervals."""
    k = y_score.shape[1]
    idx = np.arange(len(y_true))[None, :]
    cm = metrics.confusion_counts(y_true, y_score.argmax(axis=1), idx, k)
    return {
        "accuracy": float(metrics.accuracy(cm)[0]),
        "balanced_accuracy": float(metrics.balanced_accuracy(cm)[0]),
        "macro_f1": float(metrics.macro_f1(cm)[0]),
        "auroc": float(metrics.auroc_ovr(y_true, y_score, idx)[0]),
    }


def classification_scores(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    confidence: float = 0.95,
) -> dict[str, Estimate]:
    """Accuracy, balanced accuracy, macro-F1 and one-vs-rest AUROC of fixed class scores
    ``[n, k]`` against ``y_true``, each with its interval (see the module docstring)."""
    y_true = np.asarray(y_true)
    y_pred = y_score.argmax(axis=1)
    n = len(y_true)
    correct = (y_pred == y_true).astype(np.float64)
    values = point_scores(y_true, y_score)
    return {
        "accuracy": contained(
            values["accuracy"],
            *wilson(*effective_size(correct, groups), confidence),
            n,
        ),
        "balanced_accuracy": contained(
            values["balanced_accuracy"],
            *_balanced_interval(correct, y_true, groups, confidence),
            n,
        ),
        "macro_f1": contained(
            values["macro_f1"],
            *_f1_interval(y_true, y_pred, y_score.shape[1], groups, confidence),
            n,
        ),
        "auroc": auroc_estimate(y_true, y_score, groups, confidence),
    }


def agresti_coull(p: float, n_eff: float, confidence: float = 0.95) -> tuple[float, float]:
    """Agresti & Coull's (1998) interval: Wald's around ``z^2 / 2`` added successes and
    failures, clipped to [0, 1]."""
    z2 = z_value(confidence) ** 2
    total = n_eff + z2
    centre = (p * n_eff + z2 / 2) / total
    half = np.sqrt(z2 * centre * (1 - centre) / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def _balanced_interval(
    correct: np.ndarray, y_true: np.ndarray, groups: np.ndarray | None, confidence: float
) -> tuple[float, float]:
    """The union of the MOVER and the stratified-Wilson intervals of the mean class recall
    (see the module docstring); with groups each class's size is its effective size."""
    recalls, sizes = [], []
    for c in np.unique(y_true):
        mine = y_true == c
        p, n_eff = effective_size(correct[mine], None if groups is None else groups[mine])
        recalls.append(p)
        sizes.append(n_eff)
    p, n_eff = np.asarray(recalls), np.asarray(sizes)
    k = len(p)
    value = float(p.mean())
    # MOVER: the mean's distance to each bound from the parts' own distances
    bounds = np.array([agresti_coull(pc, nc, confidence) for pc, nc in zip(p, n_eff, strict=True)])
    mover_low = value - float(np.sqrt(np.sum(((p - bounds[:, 0]) / k) ** 2)))
    mover_high = value + float(np.sqrt(np.sum(((bounds[:, 1] - p) / k) ** 2)))
    # Wilson at the stratified effective size
    adjusted = (p * n_eff + 1) / (n_eff + 2)
    variance = float(np.sum(adjusted * (1 - adjusted) / (n_eff + 2))) / k**2
    centre = float(adjusted.mean())
    total = float(n_eff.sum())
    size = min(total, centre * (1 - centre) / variance) if variance > 0 else total
    wilson_low, wilson_high = wilson(value, size, confidence)
    return min(mover_low, wilson_low), max(mover_high, wilson_high)


def _f1_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    k: int,
    groups: np.ndarray | None,
    confidence: float,
) -> tuple[float, float]:
    """Wilson interval of macro-F1 at the Korn-Graubard effective size ``F1 (1 - F1) / var``,
    var the delete-one jackknife variance (one image, or one group, left out)."""
    n = len(y_true)
    units = unit_codes(n, groups)
    g = int(units.max()) + 1
    cm = np.zeros((g, k, k))
    np.add.at(cm, (units, y_true, y_pred), 1.0)
    total = cm.sum(axis=0)
    value = float(metrics.macro_f1(total[None])[0])
    if groups is None:  # images in the same cell give the same replicate: one per cell
        cm = np.eye(k * k).reshape(k * k, k, k)
        multiplicity = total.ravel()
    else:
        multiplicity = np.ones(g)
    keep = multiplicity > 0
    replicates = metrics.macro_f1(total[None] - cm[keep])
    weights = multiplicity[keep]
    g_eff = weights.sum()
    mean = float(weights @ replicates / g_eff)
    var = (g_eff - 1) / g_eff * float(weights @ (replicates - mean) ** 2)
    if var > 0 and 0 < value < 1:
        n_eff = min(n, value * (1 - value) / var)
    else:
        n_eff = float(n if groups is None else g)
    return wilson(value, n_eff, confidence)


def _hanley_mcneil(theta: np.ndarray, m: int, n: int) -> np.ndarray:
    """Hanley & McNeil's (1982) AUROC variance at ``theta`` with Newcombe's (2006) symmetric
    sample size ``N* = (m + n) / 2``."""
    star = (m + n) / 2 - 1
    shape = 1 + star * ((1 - theta) / (2 - theta) + theta / (1 + theta))
    return theta * (1 - theta) / (m * n) * shape


def hanley_mcneil_variance(
    theta: np.ndarray, y_true: np.ndarray, k: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """The Hanley-McNeil variance of a macro one-vs-rest AUROC equal to ``theta`` on these
    test labels (``k`` classes); with groups, a cluster counts as much as one image at worst."""
    n = len(y_true)
    classes = metrics.auroc_classes(k)
    shape = np.zeros_like(np.asarray(theta, dtype=np.float64))
    for c in classes:
        m = int((y_true == c).sum())
        if 0 < m < n:
            shape += _hanley_mcneil(theta, m, n - m)
    shape /= len(classes) ** 2
    if groups is not None:
        shape *= n / (int(unit_codes(n, groups).max()) + 1)
    return shape


#: the boundary floor of the AUROC interval, as a share of the Hanley-McNeil variance
HM_FLOOR = 0.5


def auroc_estimate(
    y_true: np.ndarray,
    y_score: np.ndarray,
    groups: np.ndarray | None = None,
    confidence: float = 0.95,
) -> Estimate:
    """Macro one-vs-rest AUROC with a score-type interval (Newcombe 2006): every theta in
    [0, 1] with ``(A - theta)^2 <= z^2 V(theta)``. ``V(theta)`` is DeLong's variance at the
    estimate (stratified by class; summed per cluster with groups), carried to theta by the
    Hanley-McNeil shape ``V_HM(theta) / V_HM(A)``; it is floored at ``HM_FLOOR * V_HM(theta)``
    because at the boundary DeLong's variance is zero or rests on a few discordant pairs (the
    floor is what simulation calibrated: ``benchmarks/calibration.py``)."""
    y_true = np.asarray(y_true)
    n = len(y_true)
    value, influence = metrics.auroc_influence(y_true, y_score)
    if not np.isfinite(value):
        return contained(value, np.nan, np.nan, n)
    delong = _stratified_variance(influence, y_true, groups)
    theta = np.linspace(0.0, 1.0, 2001)
    shape = hanley_mcneil_variance(theta, y_true, y_score.shape[1], groups)
    at_value = float(np.interp(value, theta, shape))
    carried = delong * shape / at_value if at_value > 0 else np.zeros_like(theta)
    variance = np.maximum(carried, HM_FLOOR * shape)
    inside = (value - theta) ** 2 <= z_value(confidence) ** 2 * variance
    return contained(value, float(theta[inside].min()), float(theta[inside].max()), n)


def _stratified_variance(
    influence: np.ndarray, labels: np.ndarray, groups: np.ndarray | None
) -> float:
    """Variance of a sum of per-image influences, the class sizes held fixed (stratified),
    with clusters (groups) as the independent units."""
    units = unit_codes(len(influence), groups)
    total = 0.0
    for c in np.unique(labels):
        mine = labels == c
        _, codes = np.unique(units[mine], return_inverse=True)
        sums = np.bincount(codes, weights=influence[mine])
        g = len(sums)
        if g > 1:
            total += g / (g - 1) * float(np.sum((sums - sums.mean()) ** 2))
    return total
