"""Probes: how well a simple classifier reads the class from frozen features.

Every probe trains on the ``train`` split (plus ``val`` where a probe tunes on it) and is scored
on the ``test`` split, with stratified-bootstrap CIs over the test images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Self

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import PredefinedSplit, StratifiedKFold, StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medprobe.analysis import metrics
from medprobe.analysis.base import Analyser, analyser
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


@analyser
class Probe(Analyser, ABC):
    """Fit on a FeatureSet's training images, score on its test images.

    Fitted attributes: ``y_true_``, ``y_pred_``, ``y_score_`` (class probabilities) and
    ``scores_`` (metric -> :class:`Estimate`).
    """

    train_splits: ClassVar[tuple[str, ...]] = ("train",)

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
        self.scores_ = classification_scores(self.y_true_, self.y_score_, **self._boot())
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
        "accuracy": metrics.statistic(metrics.accuracy, y_true, y_pred, k),
        "balanced_accuracy": metrics.statistic(metrics.balanced_accuracy, y_true, y_pred, k),
        "macro_f1": metrics.statistic(metrics.macro_f1, y_true, y_pred, k),
        "auroc": lambda idx: metrics.auroc_ovr(y_true, y_score, idx),
    }
    return {
        name: bootstrap(fn, y_true, n_resamples=n_resamples, confidence=confidence, seed=seed)
        for name, fn in stats.items()
    }


@analyser
class KNNProbe(Probe):
    """k-nearest-neighbour vote, exact search; cosine distance by default.

    Above ``faiss_threshold`` train x test pairs (and with cosine distance) the exact search
    runs on faiss (inner product of L2-normalised vectors), which returns the same neighbours
    as scikit-learn's brute force, many times faster.
    """

    k: int = 10
    metric: str = "cosine"
    faiss_threshold: float = 2e7

    def _fit_predict(self, train: FeatureSet, test: FeatureSet) -> np.ndarray:
        k = min(self.k, len(train))
        if self.metric == "cosine" and len(train) * len(test) >= self.faiss_threshold:
            return knn_vote(faiss_neighbours(train.features, test.features, k), train.labels)
        knn = KNeighborsClassifier(n_neighbors=k, metric=self.metric, algorithm="brute")
        return knn.fit(train.features, train.labels).predict_proba(test.features)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def faiss_neighbours(train: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices ``[n_queries, k]`` of the exact cosine nearest neighbours (faiss flat index)."""
    import faiss

    index = faiss.IndexFlatIP(train.shape[1])
    index.add(_unit(train))
    return index.search(_unit(queries), k)[1]


def knn_vote(neighbours: np.ndarray, train_labels: np.ndarray) -> np.ndarray:
    """Uniform-weight class fractions among the neighbours, columns = sorted training classes."""
    classes = np.unique(train_labels)
    column = np.searchsorted(classes, train_labels[neighbours])
    votes = np.zeros((len(neighbours), len(classes)))
    np.add.at(votes, (np.arange(len(neighbours))[:, None], column), 1)
    return votes / neighbours.shape[1]


@analyser
class FewShotProbe(Analyser):
    """Logistic regression on ``k`` labelled images per class, for each ``k`` in ``shots``,
    over ``draws`` random draws of the training images; scored on the test split.

    Features are L2-normalised (with one image per class there is no variance to standardise
    by). ``scores_[k][metric]`` is the mean over draws with a bootstrap CI of that mean.
    Asking for more shots than the smallest training class has stops before any fitting.
    """

    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    draws: int = 10
    C: float = 1.0

    def fit(self, fs: FeatureSet) -> Self:
        from sklearn.linear_model import LogisticRegression

        train, test = _train_test(fs, ("train",))
        smallest = int(np.bincount(train.labels)[np.unique(train.labels)].min())
        if max(self.shots) > smallest:
            raise MedprobeError(
                f"few-shot with {max(self.shots)} shots needs {max(self.shots)} training images "
                f"per class, but the smallest class of {fs.dataset!r} has {smallest}"
            )
        rng = np.random.default_rng(self.seed)
        x_train, x_test = _unit(train.features), _unit(test.features)
        k_classes = len(fs.class_names)
        self.scores_ = {}
        for shots in self.shots:
            per_draw: dict[str, list[float]] = {m: [] for m in METRICS}
            for _ in range(self.draws):
                chosen = np.concatenate(
                    [
                        rng.choice(np.flatnonzero(train.labels == c), shots, replace=False)
                        for c in np.unique(train.labels)
                    ]
                )
                model = LogisticRegression(C=self.C, max_iter=2000)
                model.fit(x_train[chosen], train.labels[chosen])
                proba = np.zeros((len(test), k_classes))
                proba[:, model.classes_] = model.predict_proba(x_test)
                point = classification_scores(test.labels, proba, n_resamples=1)
                for metric in METRICS:
                    per_draw[metric].append(point[metric].value)
            self.scores_[shots] = {
                m: _mean_with_ci(np.array(v), len(test), self.confidence, self.seed)
                for m, v in per_draw.items()
            }
        return self


def _mean_with_ci(values: np.ndarray, n: int, confidence: float, seed: int) -> Estimate:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (2000, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
    return Estimate(float(values.mean()), float(low), float(high), n)


@analyser
class LinearProbe(Probe):
    """Logistic regression on standardised features.

    The inverse regularisation strength ``C`` is chosen from ``Cs`` on the ``val`` split when the
    data has one, else by stratified k-fold cross-validation on the training split (one
    stratified 20% hold-out above ``holdout_above`` training images, where k-fold costs k times
    more and gains little); the model is then refitted on train (+ val).
    ``class_weight="balanced"`` by default, so a majority class cannot win by default.
    """

    train_splits: ClassVar[tuple[str, ...]] = ("train", "val")

    Cs: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
    balanced: bool = True
    folds: int = 5
    holdout_above: int = 5000

    def _fit_predict(self, train: FeatureSet, test: FeatureSet) -> np.ndarray:
        if (train.splits == "val").any():
            cv = PredefinedSplit(np.where(train.splits == "val", 0, -1))
        elif len(train) > self.holdout_above:
            cv = StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=self.seed)
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
