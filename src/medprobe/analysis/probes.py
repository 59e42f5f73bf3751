"""Probes: how well a simple classifier reads the class from frozen features.

Every probe trains on the ``train`` split (plus ``val`` where a probe tunes on it) and is scored
on the ``test`` split, with stratified-bootstrap CIs over the test images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import PredefinedSplit, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medprobe.analysis import metrics
from medprobe.analysis.stats import Estimate, bootstrap
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auroc")


def _train_test(fs: FeatureSet, train_splits: tuple[str, ...]) -> tuple[FeatureSet, FeatureSet]:
    fs.check_finite()
    train, test = fs.split(*train_splits), fs.split("test")
    if len(test) == 0:
        raise MedprobeError(f"dataset {fs.dataset!r} has no 'test' split to score a probe on")
    if len(np.unique(train.labels)) < 2:
        raise MedprobeError(
            f"the training split of {fs.dataset!r} has fewer than 2 classes; a probe needs 2"
        )
    return train, test


class Probe(ABC):
    """Fit on a FeatureSet's training images, score on its test images.

    Fitted attributes: ``y_true_``, ``y_pred_``, ``y_score_`` (class probabilities) and
    ``scores_`` (metric -> :class:`Estimate`).
    """

    train_splits: tuple[str, ...] = ("train",)

    def __init__(self, *, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> None:
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.seed = seed

    @abstractmethod
    def _fit_predict(self, train: FeatureSet, test: FeatureSet) -> np.ndarray:
        """Class probabilities ``[n_test, n_train_classes]`` for the sorted training classes."""

    def fit(self, fs: FeatureSet) -> Self:
        train, test = _train_test(fs, self.train_splits)
        k = len(fs.class_names)
        proba = self._fit_predict(train, test)
        self.y_score_ = np.zeros((len(test), k))
        self.y_score_[:, np.unique(train.labels)] = proba
        self.y_true_ = test.labels
        self.y_pred_ = self.y_score_.argmax(axis=1)
        self.scores_ = classification_scores(
            self.y_true_,
            self.y_score_,
            n_resamples=self.n_resamples,
            confidence=self.confidence,
            seed=self.seed,
        )
        return self


def classification_scores(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Estimate]:
    """Accuracy, balanced accuracy, macro-F1 and one-vs-rest AUROC, each with a bootstrap CI."""
    k = y_score.shape[1]
    y_pred = y_score.argmax(axis=1)
    stats = {
        "accuracy": lambda idx: metrics.accuracy(metrics.confusion_counts(y_true, y_pred, idx, k)),
        "balanced_accuracy": lambda idx: metrics.balanced_accuracy(
            metrics.confusion_counts(y_true, y_pred, idx, k)
        ),
        "macro_f1": lambda idx: metrics.macro_f1(metrics.confusion_counts(y_true, y_pred, idx, k)),
        "auroc": lambda idx: metrics.auroc_ovr(y_true, y_score, idx),
    }
    return {
        name: bootstrap(fn, y_true, n_resamples=n_resamples, confidence=confidence, seed=seed)
        for name, fn in stats.items()
    }


class KNNProbe(Probe):
    """k-nearest-neighbour vote (exact search, cosine distance by default)."""

    def __init__(self, k: int = 10, metric: str = "cosine", **kwargs) -> None:
        super().__init__(**kwargs)
        self.k = k
        self.metric = metric

    def _fit_predict(self, train: FeatureSet, test: FeatureSet) -> np.ndarray:
        knn = KNeighborsClassifier(
            n_neighbors=min(self.k, len(train)), metric=self.metric, algorithm="brute"
        )
        return knn.fit(train.features, train.labels).predict_proba(test.features)


class LinearProbe(Probe):
    """Logistic regression on standardised features.

    The inverse regularisation strength ``C`` is chosen from ``Cs`` on the ``val`` split when the
    data has one, else by stratified k-fold cross-validation on the training split; the model is
    then refitted on train (+ val). ``class_weight="balanced"`` by default, so a majority class
    cannot win by default.
    """

    train_splits = ("train", "val")

    def __init__(
        self,
        Cs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
        *,
        balanced: bool = True,
        folds: int = 5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.Cs = Cs
        self.balanced = balanced
        self.folds = folds

    def _fit_predict(self, train: FeatureSet, test: FeatureSet) -> np.ndarray:
        if (train.splits == "val").any():
            cv = PredefinedSplit(np.where(train.splits == "val", 0, -1))
        else:
            smallest = np.bincount(train.labels)[np.unique(train.labels)].min()
            cv = StratifiedKFold(
                max(2, min(self.folds, smallest)), shuffle=True, random_state=self.seed
            )
        model = make_pipeline(
            StandardScaler(),
            LogisticRegressionCV(
                Cs=list(self.Cs),
                cv=cv,
                scoring="balanced_accuracy",
                max_iter=3000,
                l1_ratios=(0.0,),
                use_legacy_attributes=False,
                class_weight="balanced" if self.balanced else None,
                random_state=self.seed,
            ),
        )
        self.model_ = model.fit(train.features, train.labels)
        self.C_ = float(np.ravel(model[-1].C_)[0])
        return model.predict_proba(test.features)
