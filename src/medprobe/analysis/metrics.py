"""Classification metrics, vectorised over resamples, and the structural components of AUROC.

The confusion-matrix metrics take confusion matrices ``[B, k, k]`` (rows: true class), built
either from index sets ``idx`` of shape ``[B, n]`` (:func:`confusion_counts`) or from resample
weights ``[B, n]`` (:func:`weighted_confusion`). AUROC ranks the scores once and resamples
weights over the ranks (:func:`weighted_auroc_ovr`): a bootstrap never re-sorts. Each metric
equals its scikit-learn counterpart on the identity resample (tested).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.stats import rankdata


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices ``[B, k, k]`` (rows: true class) of each resample."""
    b = idx.shape[0]
    codes = (y_true[idx] * k + y_pred[idx]) + (np.arange(b) * k * k)[:, None]
    return np.bincount(codes.ravel(), minlength=b * k * k).reshape(b, k, k).astype(np.float64)


def weighted_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, k: int
) -> np.ndarray:
    """Confusion matrices ``[B, k, k]`` with every image counted ``weights[b, i]`` times."""
    n = len(y_true)
    onehot = sparse.csr_matrix(
        (np.ones(n), (np.arange(n), np.asarray(y_true) * k + np.asarray(y_pred))), (n, k * k)
    )
    return np.asarray(onehot.T @ np.asarray(weights, dtype=np.float64).T).T.reshape(-1, k, k)


def accuracy(cm: np.ndarray) -> np.ndarray:
    return np.trace(cm, axis1=1, axis2=2) / cm.sum(axis=(1, 2))


def balanced_accuracy(cm: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present in the evaluation set."""
    support = cm.sum(axis=2)
    recall = np.diagonal(cm, axis1=1, axis2=2) / np.where(support > 0, support, 1)
    present = support > 0
    return (recall * present).sum(axis=1) / present.sum(axis=1)


def macro_f1(cm: np.ndarray) -> np.ndarray:
    """Unweighted mean F1 over the classes that occur as truth or prediction."""
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(axis=2) + cm.sum(axis=1)
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
    present = denom > 0
    return (f1 * present).sum(axis=1) / present.sum(axis=1)


def auroc_classes(k: int) -> list[int]:
    """The score columns whose one-vs-rest AUROC is averaged (binary: the positive class)."""
    return [1] if k == 2 else list(range(k))


def auroc_ovr(y_true: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest AUROC (Mann-Whitney with tie-averaged ranks) per resample.

    Binary problems use the positive class's score, as scikit-learn does. A resample in which a
    class has no positives or no negatives contributes NaN for that class.
    """
    true = y_true[idx]
    per_class = []
    for c in auroc_classes(scores.shape[1]):
        ranks = rankdata(scores[idx, c], axis=1)
        pos = true == c
        n_pos = pos.sum(axis=1)
        n_neg = pos.shape[1] - n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        per_class.append(np.where((n_pos > 0) & (n_neg > 0), auc, np.nan))
    return _macro(np.stack(per_class, axis=1))


def _macro(per_class: np.ndarray) -> np.ndarray:
    defined = np.isfinite(per_class).sum(axis=1)
    total = np.where(np.isfinite(per_class), per_class, 0).sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(defined > 0, total / np.maximum(defined, 1), np.nan)


class RankedScores:
    """Scores sorted once per class, so AUROC of any weighting of the images costs O(n).

    ``auroc(weights)`` is the macro one-vs-rest AUROC of ``[B, n]`` weightings (bootstrap
    counts, jackknife masks); ties count one half (the Mann-Whitney statistic).
    """

    def __init__(self, y_true: np.ndarray, scores: np.ndarray) -> None:
        self.y_true = np.asarray(y_true)
        self.classes = auroc_classes(scores.shape[1])
        self._sorted = []
        for c in self.classes:
            order = np.argsort(scores[:, c], kind="stable")
            s = scores[order, c]
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups
            self._sorted.append((order, starts, self.y_true[order] == c))

    def auroc(self, weights: np.ndarray) -> np.ndarray:
        weights = np.asarray(weights, dtype=np.float64)
        per_class = []
        for order, starts, pos in self._sorted:
            w = weights[:, order]
            wp = np.add.reduceat(w * pos, starts, axis=1)
            wn = np.add.reduceat(w * ~pos, starts, axis=1)
            below = np.cumsum(wn, axis=1) - wn
            p, q = wp.sum(axis=1), wn.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                auc = (wp * (below + 0.5 * wn)).sum(axis=1) / (p * q)
            per_class.append(np.where((p > 0) & (q > 0), auc, np.nan))
        return _macro(np.stack(per_class, axis=1))


def auroc_influence(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """Macro one-vs-rest AUROC and each image's influence on it (DeLong's structural
    components, DeLong, DeLong & Clarke-Pearson 1988; fast midrank form, Sun & Xu 2014).

    For class c with m positives and n negatives, a positive's component is the share of
    negatives it outranks (ties one half), a negative's the share of positives that outrank
    it; the AUROC is their mean on either side, and ``(V - A) / m`` (positives) or
    ``(V - A) / n`` (negatives) is an image's first-order influence. The macro influence
    averages over classes; sums of squares of influences (within strata or clusters) give the
    variance (Obuchowski 1997 for clusters).
    """
    y_true = np.asarray(y_true)
    influences, aucs = [], []
    for c in auroc_classes(scores.shape[1]):
        pos = y_true == c
        m, n = int(pos.sum()), int((~pos).sum())
        if m == 0 or n == 0:
            continue
        s = scores[:, c]
        rank_all = rankdata(s)
        rank_pos = rankdata(s[pos])
        rank_neg = rankdata(s[~pos])
        v = np.empty(len(s))
        v[pos] = (rank_all[pos] - rank_pos) / n
        v[~pos] = 1 - (rank_all[~pos] - rank_neg) / m
        auc = float(v[pos].mean())
        aucs.append(auc)
        influences.append(np.where(pos, (v - auc) / m, (v - auc) / n))
    if not aucs:
        return float("nan"), np.zeros(len(y_true))
    return float(np.mean(aucs)), np.mean(influences, axis=0)


def statistic(metric, y_true: np.ndarray, y_pred: np.ndarray, k: int):
    """``idx -> values`` for a confusion-matrix metric (``accuracy``, ``balanced_accuracy``,
    ``macro_f1``) of fixed predictions, ready for :func:`~medprobe.analysis.stats.bootstrap`."""
    return lambda idx: metric(confusion_counts(y_true, y_pred, idx, k))
