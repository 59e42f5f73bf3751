"""Classification metrics, vectorised over bootstrap resamples.

Each function takes index sets ``idx`` of shape ``[B, n]`` into the evaluation arrays and returns
``B`` values, so 1,000 bootstrap resamples cost one numpy call instead of 1,000 scikit-learn calls.
Each equals its scikit-learn counterpart on the identity index set (tested).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices ``[B, k, k]`` (rows: true class) of each resample."""
    b = idx.shape[0]
    codes = (y_true[idx] * k + y_pred[idx]) + (np.arange(b) * k * k)[:, None]
    return np.bincount(codes.ravel(), minlength=b * k * k).reshape(b, k, k).astype(np.float64)


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


def auroc_ovr(y_true: np.ndarray, scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest AUROC (Mann-Whitney with tie-averaged ranks) per resample.

    Binary problems use the positive class's score, as scikit-learn does. A resample in which a
    class has no positives or no negatives contributes NaN for that class.
    """
    true = y_true[idx]
    k = scores.shape[1]
    classes = [1] if k == 2 else range(k)
    per_class = []
    for c in classes:
        ranks = rankdata(scores[idx, c], axis=1)
        pos = true == c
        n_pos = pos.sum(axis=1)
        n_neg = pos.shape[1] - n_pos
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = ((ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        per_class.append(np.where((n_pos > 0) & (n_neg > 0), auc, np.nan))
    stacked = np.stack(per_class, axis=1)
    defined = np.isfinite(stacked).sum(axis=1)
    total = np.where(np.isfinite(stacked), stacked, 0).sum(axis=1)
    return np.where(defined > 0, total / np.maximum(defined, 1), np.nan)


def statistic(metric, y_true: np.ndarray, y_pred: np.ndarray, k: int):
    """``idx -> values`` for a confusion-matrix metric (``accuracy``, ``balanced_accuracy``,
    ``macro_f1``) of fixed predictions, ready for :func:`~medprobe.analysis.stats.bootstrap`."""
    return lambda idx: metric(confusion_counts(y_true, y_pred, idx, k))
