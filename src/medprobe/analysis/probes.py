"""Probes: how well a simple classifier reads the class from frozen features.

Every probe trains on the ``train`` split (plus ``val`` where a probe tunes on it) and is scored
on the ``test`` split. The kNN and linear probes' intervals are conditional on the fitted probe
(they cover its performance on the test population; :mod:`medprobe.analysis.scores`); the
few-shot intervals also cover the variation between random draws of the training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Self

import numpy as np
from scipy.stats import t
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import PredefinedSplit, StratifiedKFold, StratifiedShuffleSplit
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler
from sklearn.utils.class_weight import compute_class_weight

from medprobe.analysis import metrics
from medprobe.analysis.base import Analyser, analyser
from medprobe.analysis.scores import (
    HM_FLOOR,
    METRICS,
    classification_scores,
    hanley_mcneil_variance,
)
from medprobe.analysis.stats import (
    Estimate,
    chunks,
    contained,
    jackknife_blocks,
    stratified_subsample,
    wilson,
)
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet

#: linear-probe protocols: ours, and CLIP_benchmark's (for tables set beside published ones)
PROTOCOLS = ("medprobe", "clip_benchmark")


def _train_mask(fs: FeatureSet, train_splits: tuple[str, ...]) -> np.ndarray:
    """The training rows, once the FeatureSet is checked fit for a probe (no copy of the
    features: at 100k x 768 each copy is 300 MB)."""
    fs.check_finite()
    train = np.isin(fs.splits, train_splits)
    if not (fs.splits == "test").any():
        raise MedprobeError(f"dataset {fs.dataset!r} has no 'test' split to score a probe on")
    if len(np.unique(fs.labels[train])) < 2:
        raise MedprobeError(
            f"the training split of {fs.dataset!r} has fewer than 2 classes; a probe needs 2"
        )
    return train


@analyser
class Scored(Analyser):
    """An analyser that trains on a FeatureSet's training images and scores test images.

    Fitted attributes: ``y_true_``, ``y_pred_``, ``y_score_`` (class probabilities),
    ``test_ids_`` and ``scores_`` (metric -> :class:`Estimate`, intervals over the test images,
    or test groups).
    """

    train_splits: ClassVar[tuple[str, ...]] = ("train",)

    def _score(self, fs: FeatureSet, train_labels: np.ndarray, rows: np.ndarray, proba) -> Self:
        """Scores of the test images at ``rows`` of ``fs``, given their class probabilities
        ``[len(rows), n_train_classes]`` for the sorted training classes."""
        self.y_score_ = np.zeros((len(rows), len(fs.class_names)))
        self.y_score_[:, np.unique(train_labels)] = proba
        self.y_true_ = fs.labels[rows]
        self.y_pred_ = self.y_score_.argmax(axis=1)
        self.test_ids_ = fs.ids[rows]
        groups = None if fs.groups is None else fs.groups[rows]
        self.scores_ = classification_scores(
            self.y_true_, self.y_score_, groups=groups, confidence=self.confidence
        )
        return self


@dataclass(frozen=True)
class Neighbours:
    """The nearest training images (cosine, exact, nearest first) of the test images scored:
    all of them, or a stratified subsample of ``max_samples``. One search per FeatureSet,
    reused by every k of the kNN probe and by mutual kNN."""

    #: rows (in the FeatureSet) of the test images scored
    queries: np.ndarray
    #: ``[queries, k]`` positions in the training split (``fs.split("train")``)
    indices: np.ndarray
    subsampled: bool


def search_neighbours(
    fs: FeatureSet,
    k: int,
    *,
    max_samples: int = 5000,
    seed: int = 0,
    faiss_threshold: float = 2e7,
) -> Neighbours:
    """Each scored test image's ``k`` nearest training images. Scoring at most ``max_samples``
    test images keeps the search linear in the number of training images; the probe's
    intervals then cover its accuracy from the images scored. Above ``faiss_threshold``
    train x test pairs the exact search runs on faiss (inner products of L2-normalised
    float32 vectors, the same neighbours as scikit-learn's brute force, many times faster)."""
    train, test_rows = np.flatnonzero(fs.splits == "train"), np.flatnonzero(fs.splits == "test")
    keep = stratified_subsample(fs.labels[test_rows], max_samples, seed)
    queries = test_rows[keep]
    k = min(k, len(train))
    x = fs.features[queries]
    if len(train) * len(queries) >= faiss_threshold:
        indices = faiss_neighbours(fs.features, x, k, rows=train)
    else:
        search = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute")
        indices = search.fit(fs.features[train]).kneighbors(x, return_distance=False)
    return Neighbours(queries, indices, len(queries) < len(test_rows))


@analyser
class KNNProbe(Scored):
    """k-nearest-neighbour vote on the training images, exact search; cosine distance by
    default (from :func:`search_neighbours`, which a caller may pass in to share one search
    among several k). At most ``max_samples`` test images are scored (a stratified subsample;
    ``subsampled_`` says whether it was one)."""

    k: int = 10
    metric: str = "cosine"
    max_samples: int = 5000
    faiss_threshold: float = 2e7

    def fit(self, fs: FeatureSet, neighbours: Neighbours | None = None) -> Self:
        train = _train_mask(fs, self.train_splits)
        train_labels = fs.labels[train]
        k = min(self.k, len(train_labels))
        if self.metric == "cosine":
            found = neighbours or search_neighbours(
                fs,
                k,
                max_samples=self.max_samples,
                seed=self.seed,
                faiss_threshold=self.faiss_threshold,
            )
            if found.indices.shape[1] < k:
                raise ValueError(f"the neighbour search found {found.indices.shape[1]} < {k}")
            queries, proba = found.queries, knn_vote(found.indices[:, :k], train_labels)
            self.subsampled_ = found.subsampled
        else:
            test_rows = np.flatnonzero(fs.splits == "test")
            keep = stratified_subsample(fs.labels[test_rows], self.max_samples, self.seed)
            queries, self.subsampled_ = test_rows[keep], len(keep) < len(test_rows)
            knn = KNeighborsClassifier(n_neighbors=k, metric=self.metric, algorithm="brute")
            knn.fit(fs.features[train], train_labels)
            proba = knn.predict_proba(fs.features[queries])
        return self._score(fs, train_labels, queries, proba)


def _unit(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """L2-normalised float32 copy of ``x`` (or of ``x[rows]``), one copy, normalised in
    place in row chunks."""
    out = np.array(x if rows is None else x[rows], dtype=np.float32)
    for part in chunks(len(out)):
        out[part] /= np.maximum(np.linalg.norm(out[part], axis=1, keepdims=True), 1e-12)
    return out


def faiss_neighbours(
    features: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Indices ``[n_queries, k]`` of the exact cosine nearest neighbours among ``features``
    (or ``features[rows]``, indices then into ``rows``), by faiss's brute-force inner-product
    search over row chunks normalised as they go, merged into one top-k (ties to the lower
    index). No copy of the searched features is made: a flat index would hold one, and
    growing it in chunks reallocates it (about 2x its size at the peak)."""
    import faiss

    rows = np.arange(len(features)) if rows is None else rows
    k = min(k, len(rows))
    unit_queries = _unit(queries)
    best_sim = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_idx = np.zeros((len(queries), 0), dtype=np.int64)
    # 2,048-row chunks: faiss computes a (up to 4,096) queries x chunk float32 block, 134 MB
    # at 8,192 rows, 34 MB at 2,048; the extra top-k merges are cheap
    for part in chunks(len(rows), 2048):
        base = _unit(features, rows[part])
        sim, idx = faiss.knn(
            unit_queries, base, min(k, len(base)), metric=faiss.METRIC_INNER_PRODUCT
        )
        best_sim = np.concatenate([best_sim, sim], axis=1)
        best_idx = np.concatenate([best_idx, idx + part.start], axis=1)
        # per query: highest similarity first, the lower index among equals
        order = np.lexsort((best_idx, -best_sim), axis=1)[:, :k]
        best_sim = np.take_along_axis(best_sim, order, axis=1)
        best_idx = np.take_along_axis(best_idx, order, axis=1)
    return best_idx


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
    by). ``scores_[k][metric]`` is the mean over draws. Its interval covers the expected
    performance of the procedure -- over random draws of k training images per class *and*
    over test sets: the variance is the draws' (between-draw variance / draws) plus the test
    set's (delete-a-group jackknife over test images, or groups, of the draw-averaged metric),
    and the interval is Wilson's at the effective size this variance implies (Korn & Graubard
    1998), inside [0, 1]. Asking for more shots than the smallest training class has stops
    before any fitting.
    """

    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    draws: int = 10
    C: float = 1.0

    def fit(self, fs: FeatureSet) -> Self:
        # only the drawn training rows are ever normalised: no copy of the training features
        train_rows = np.flatnonzero(_train_mask(fs, ("train",)))
        train_labels = fs.labels[train_rows]
        test_rows = np.flatnonzero(fs.splits == "test")
        test_labels = fs.labels[test_rows]
        test_groups = None if fs.groups is None else fs.groups[test_rows]
        n_test = len(test_rows)
        smallest = int(np.bincount(train_labels)[np.unique(train_labels)].min())
        if max(self.shots) > smallest:
            raise MedprobeError(
                f"few-shot with {max(self.shots)} shots needs {max(self.shots)} training images "
                f"per class, but the smallest class of {fs.dataset!r} has {smallest}"
            )
        rng = np.random.default_rng(self.seed)
        k_classes = len(fs.class_names)
        blocks = jackknife_blocks(test_labels, test_groups, self.n_blocks, self.seed)
        sets = np.concatenate(
            [np.ones((1, n_test)), blocks[None] != np.arange(blocks.max() + 1)[:, None]]
        )
        self.scores_ = {}
        for shots in self.shots:
            per_draw = {m: [] for m in METRICS}  # each: [1 + G] values (all, blocks left out)
            for _ in range(self.draws):
                chosen = np.concatenate(
                    [
                        rng.choice(np.flatnonzero(train_labels == c), shots, replace=False)
                        for c in np.unique(train_labels)
                    ]
                )
                model = LogisticRegression(C=self.C, max_iter=2000)
                model.fit(_unit(fs.features, train_rows[chosen]), train_labels[chosen])
                proba = np.zeros((n_test, k_classes))
                # normalised chunk by chunk: a unit copy of the test images is N x D floats
                for part in chunks(n_test):
                    rows = np.ix_(np.arange(part.start, part.stop), model.classes_)
                    proba[rows] = model.predict_proba(_unit(fs.features, test_rows[part]))
                for metric, values in set_scores(test_labels, proba, sets).items():
                    per_draw[metric].append(values)
            scores = {
                m: draws_estimate(np.array(v), n_test, self.confidence)
                for m, v in per_draw.items()
                if m != "auroc"
            }
            # near AUROC = 1 the jackknife rests on a few discordant pairs: floored like the
            # fixed-classifier interval (coverage 0.79 at 16 shots without the floor), at half
            # its share since averaging over draws smooths the scores (0.98-0.99 at the full one)
            auroc = np.array(per_draw["auroc"])
            floor = (
                HM_FLOOR
                / 2
                * float(
                    hanley_mcneil_variance(
                        np.nanmean(auroc[:, 0]), test_labels, k_classes, test_groups
                    )
                )
            )
            scores["auroc"] = draws_estimate(auroc, n_test, self.confidence, floor)
            self.scores_[shots] = {m: scores[m] for m in METRICS}
        return self


def set_scores(y_true: np.ndarray, y_score: np.ndarray, sets: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics on each weighting ``[S, n]`` of the test images (0/1 masks here)."""
    k = y_score.shape[1]
    cm = metrics.weighted_confusion(y_true, y_score.argmax(axis=1), sets, k)
    return {
        "accuracy": metrics.accuracy(cm),
        "balanced_accuracy": metrics.balanced_accuracy(cm),
        "macro_f1": metrics.macro_f1(cm),
        "auroc": metrics.RankedScores(y_true, y_score).auroc(sets),
    }


def draws_estimate(
    values: np.ndarray, n: int, confidence: float, test_floor: float = 0.0
) -> Estimate:
    """Mean over draws of a metric (``values[draw, set]``, set 0 = every test image, then one
    block left out each) with the Wilson interval at the effective size of its total variance,
    between-draw variance / draws + jackknife variance over test blocks (at least
    ``test_floor``); the critical value is Student's t at the Satterthwaite degrees of freedom
    of that sum (few draws, few blocks)."""
    draws = values.shape[0]
    mean_all = values[:, 0]
    value = float(np.nanmean(mean_all))
    if not np.isfinite(value):
        return contained(value, np.nan, np.nan, n)
    between = float(np.nanvar(mean_all, ddof=1)) / draws if draws > 1 else 0.0
    replicates = np.nanmean(values[:, 1:], axis=0)
    g = len(replicates)
    test_var = (g - 1) / g * float(np.nansum((replicates - np.nanmean(replicates)) ** 2))
    test_var = max(test_var, test_floor)
    variance = between + test_var
    if not (variance > 0 and 0 < value < 1):
        return contained(value, *wilson(value, n, confidence), n)
    parts = [(between, draws - 1), (test_var, g - 1)]
    dof = variance**2 / sum(v**2 / d for v, d in parts if d > 0 and v > 0)
    critical = float(t.ppf((1 + confidence) / 2, dof))
    n_eff = value * (1 - value) / variance
    return contained(value, *wilson(value, n_eff, critical=critical), n)


@analyser
class LinearProbe(Scored):
    """Logistic regression on frozen features, the regularisation chosen on held-out images.

    ``protocol="medprobe"`` (default): standardised features, ``class_weight="balanced"`` (a
    majority class cannot win by default), the inverse regularisation strength ``C`` chosen
    from ``Cs`` by balanced accuracy on the ``val`` split when the data has one, else by
    stratified k-fold cross-validation on the training split (one stratified 20% hold-out
    above ``holdout_above`` training images).

    ``protocol="clip_benchmark"``: CLIP_benchmark's linear probe -- L2-normalised features, no
    class weights, the regularisation swept on a validation split (the ``val`` split, else a
    stratified 20% of train) by accuracy -- so numbers can be set beside published tables.

    Either way the model is then refitted on train (+ val) with the chosen ``C``. The sweep is
    scikit-learn's ``LogisticRegressionCV`` (lbfgs, warm-started from the smaller ``C``, the
    best summed fold score, its first on ties) written out so that the training images are
    held once: as one float64 matrix scaled in place, the form lbfgs fits on without copying
    it, with a single hold-out's images ordered last so that its fits and scores read views
    (``LogisticRegressionCV`` held a float32 scaled copy, a float64 one and each fold's copy:
    1.35 GB at 70k x 768). Test images are scored in chunks.

    Fitted attributes besides :class:`Scored`'s: ``model_`` (the scaler and the refitted
    ``LogisticRegression``, a scikit-learn pipeline), ``C_`` and ``cv_scores_``
    (``[folds, Cs]``, each fold's score at each ``C``).
    """

    train_splits: ClassVar[tuple[str, ...]] = ("train", "val")

    protocol: Literal["medprobe", "clip_benchmark"] = "medprobe"
    Cs: tuple[float, ...] | None = None
    folds: int = 5
    holdout_above: int = 5000

    #: default C grids: standardised features need less, unit-norm features more
    GRIDS: ClassVar[dict[str, tuple[float, ...]]] = {
        "medprobe": (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
        "clip_benchmark": tuple(np.logspace(-2, 4, 13).tolist()),
    }

    def _cv(self, labels: np.ndarray, splits: np.ndarray):
        if (splits == "val").any():
            return PredefinedSplit(np.where(splits == "val", 0, -1))
        if self.protocol == "clip_benchmark" or len(labels) > self.holdout_above:
            return StratifiedShuffleSplit(n_splits=1, test_size=0.2, random_state=self.seed)
        smallest = np.bincount(labels)[np.unique(labels)].min()
        return StratifiedKFold(
            max(2, min(self.folds, smallest)), shuffle=True, random_state=self.seed
        )

    def fit(self, fs: FeatureSet) -> Self:
        if self.protocol not in PROTOCOLS:
            raise MedprobeError(
                f"linear-probe protocol must be one of {', '.join(PROTOCOLS)}; "
                f"got {self.protocol!r}"
            )
        ours = self.protocol == "medprobe"
        rows = np.flatnonzero(_train_mask(fs, self.train_splits))
        labels = fs.labels[rows]
        folds = list(self._cv(labels, fs.splits[rows]).split(np.empty((len(rows), 0)), labels))
        if len(folds) == 1:  # one hold-out: its images last, so fold and refit read views
            fit_rows, held_out = folds[0]
            order = np.concatenate([fit_rows, held_out])
            rows, labels = rows[order], labels[order]
            folds = [(slice(0, len(fit_rows)), slice(len(fit_rows), None))]
        x = np.empty((len(rows), fs.dim))
        for part in chunks(len(rows)):
            x[part] = fs.features[rows[part]]
        if ours:
            scaler = StandardScaler()
            for part in chunks(len(rows)):  # its one-call fit makes a full-size temporary
                scaler.partial_fit(x[part])
        else:
            scaler = Normalizer().fit(x)
        scaler.transform(x, copy=False)
        classes = np.unique(labels)
        weights = None
        if ours:
            balanced = compute_class_weight("balanced", classes=classes, y=labels)
            weights = dict(zip(classes, balanced, strict=True))
        scorer = get_scorer("balanced_accuracy" if ours else "accuracy")
        Cs = list(self.Cs or self.GRIDS[self.protocol])

        def classifier(C: float, **options) -> LogisticRegression:
            return LogisticRegression(
                C=C, class_weight=weights, max_iter=3000, random_state=self.seed, **options
            )

        self.cv_scores_ = np.empty((len(folds), len(Cs)))
        for f, (fit_rows, held_out) in enumerate(folds):
            model = classifier(Cs[0], warm_start=True)
            for j, C in enumerate(Cs):
                model.set_params(C=C).fit(x[fit_rows], labels[fit_rows])
                self.cv_scores_[f, j] = scorer(model, x[held_out], labels[held_out])
        self.C_ = float(Cs[int(np.argmax(self.cv_scores_.sum(axis=0)))])
        self.model_ = make_pipeline(scaler, classifier(self.C_).fit(x, labels))
        del x
        test_rows = np.flatnonzero(fs.splits == "test")
        proba = np.empty((len(test_rows), len(classes)))
        for part in chunks(len(test_rows)):
            proba[part] = self.model_.predict_proba(fs.features[test_rows[part]])
        return self._score(fs, labels, test_rows, proba)
