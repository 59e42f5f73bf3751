"""Do the burned-in text and marks give the label away? Prevalence per class and a classifier
that sees only the detections."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from joblib import Parallel, delayed, effective_n_jobs
from scipy import stats as sps
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score

from medprobe.analysis.stats import Estimate, bootstrap
from medprobe.audit.boxes import TextBox
from medprobe.audit.detect import TextDetections, read_cached, write_cached
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

#: the layout of a cached leakage fit (:meth:`TextLeakage.fit` with a cache)
LEAKAGE_FORMAT = 2

#: the default bound of the label-permutation test (its smallest p-value is 1/101)
PERMUTATIONS = 100

BOX_FEATURES = (
    "words",
    "text_area",
    "largest_height",
    "largest_width",
    "largest_x",
    "largest_y",
    "mean_x",
    "mean_y",
    "mean_length",
    "marks",
    "mark_area",
)


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """A proportion with its Wilson score interval (good for small n and proportions near 0)."""
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    z = sps.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def text_prevalence(detections: TextDetections, kind: str = "word") -> dict[str, Estimate]:
    """Fraction of images with any detected word (``kind="mark"``: any non-word mark): ``all``
    and per class (Wilson 95% CI)."""
    has = detections.has_text if kind == "word" else detections.has_marks
    out = {"all": wilson(int(has.sum()), len(has))}
    for k, name in enumerate(detections.class_names):
        mine = has[detections.labels == k]
        out[name] = wilson(int(mine.sum()), len(mine))
    return out


def token_matrix(
    detections: TextDetections, min_images: int = 2
) -> tuple[np.ndarray, list[str], Counter]:
    """Which frequent tokens (found in at least ``min_images`` images) each image contains:
    a binary ``[images, tokens]`` matrix, the sorted vocabulary, and every token's image count.

    The vocabulary ignores the labels, so choosing it on all images leaks nothing into a
    cross-validation.
    """
    per_image = [{b.token for b in boxes if b.token} for boxes in detections.boxes]
    counts = Counter(t for tokens in per_image for t in tokens)
    vocabulary = sorted(t for t, c in counts.items() if c >= min_images)
    matrix = np.array([[t in mine for t in vocabulary] for mine in per_image], dtype=float)
    return matrix.reshape(len(per_image), len(vocabulary)), vocabulary, counts


def token_table(detections: TextDetections, min_images: int = 2) -> pd.DataFrame:
    """Tokens found in at least ``min_images`` images: per class, the fraction of images that
    contain the token; sorted by how unevenly the token is spread over classes."""
    matrix, vocabulary, counts = token_matrix(detections, min_images)
    table = pd.DataFrame({"token": vocabulary, "images": [counts[t] for t in vocabulary]})
    for k, name in enumerate(detections.class_names):
        mine = matrix[detections.labels == k]
        table[name] = mine.mean(axis=0) if len(mine) else float("nan")
    if not table.empty:
        fractions = table[detections.class_names]
        table = table.assign(spread=fractions.max(axis=1) - fractions.min(axis=1))
        table = table.sort_values(["spread", "images"], ascending=False, ignore_index=True)
    return table


def box_features(boxes: list[TextBox], size: tuple[int, int]) -> list[float]:
    """Where and how large the words are, how many marks and how much of the image they
    cover (:data:`BOX_FEATURES`), relative to the image."""
    width, height = (max(1, s) for s in size)
    marks = [b for b in boxes if b.kind == "mark"]
    covered = [float(len(marks)), sum(b.width * b.height for b in marks) / (width * height)]
    boxes = [b for b in boxes if b.kind == "word"]
    if not boxes:
        return [0.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0, 0.0, *covered]
    largest = max(boxes, key=lambda b: b.height)
    centres_x = [(b.x + b.width / 2) / width for b in boxes]
    centres_y = [(b.y + b.height / 2) / height for b in boxes]
    return [
        float(len(boxes)),
        sum(b.width * b.height for b in boxes) / (width * height),
        largest.height / height,
        largest.width / width,
        (largest.x + largest.width / 2) / width,
        (largest.y + largest.height / 2) / height,
        float(np.mean(centres_x)),
        float(np.mean(centres_y)),
        float(np.mean([len(b.token) for b in boxes])),
        *covered,
    ]


def ocr_features(detections: TextDetections, min_images: int = 2) -> tuple[np.ndarray, list[str]]:
    """One row per image: which frequent tokens (words, and marks as ``<name>``) it contains
    (:func:`token_matrix`) and its box features."""
    tokens, vocabulary, _ = token_matrix(detections, min_images)
    boxes = np.array(
        [box_features(b, s) for b, s in zip(detections.boxes, detections.sizes, strict=True)],
        dtype=float,
    )
    names = [f"token:{t}" for t in vocabulary] + list(BOX_FEATURES)
    return np.hstack([tokens, boxes]), names


class TextLeakage(BaseEstimator):
    """How well can the label be predicted from the detections (words and marks) alone?

    A random forest on :func:`ocr_features` is cross-validated (stratified ``n_splits``-fold,
    repeated ``n_repeats`` times with different shuffles); each image's correctness is averaged
    over the repeats, and the balanced accuracy gets a stratified-bootstrap CI over images. The
    class-prior baseline scores ``chance_ = 1/K`` balanced accuracy. When most images carry no
    text, the bootstrap CI can be narrow around a tiny gain, so a label-permutation test of the
    same cross-validation (at most ``n_permutations``; Ojala & Garriga 2010) gives
    ``p_value_``. It stops as soon as ``stop_after`` permuted scores have reached the observed
    one -- Besag & Clifford's (1991) sequential Monte-Carlo p-value, ``stop_after / run``,
    valid like the fixed-size one -- so text that says nothing about the label costs a
    fraction of the permutations (p about 0.3: about 34 instead of 100); otherwise
    ``p_value_ = (reached + 1) / (n_permutations + 1)``. ``permutations_`` is the number run.
    ``flagged_`` (the text leaks the label) needs both: CI above chance and p < ``alpha``.

    Fitted attributes: ``balanced_accuracy_``, ``accuracy_`` (Estimates), ``chance_``,
    ``prior_accuracy_`` (majority-class accuracy), ``p_value_``, ``flagged_``, ``feature_names_``,
    ``importances_`` (feature -> mean impurity decrease of a forest fit on all images),
    ``correct_`` (each image's share of the repeats that predicted it right).
    """

    def __init__(
        self,
        n_splits: int = 5,
        n_repeats: int = 5,
        n_resamples: int = 1000,
        min_images: int = 2,
        n_permutations: int = PERMUTATIONS,
        stop_after: int = 10,
        alpha: float = 0.05,
        seed: int = 0,
    ) -> None:
        self.n_splits = n_splits
        self.n_repeats = n_repeats
        self.n_resamples = n_resamples
        self.min_images = min_images
        self.n_permutations = n_permutations
        self.stop_after = stop_after
        self.alpha = alpha
        self.seed = seed

    def _forest(self, seed: int) -> RandomForestClassifier:
        return RandomForestClassifier(
            n_estimators=50, min_samples_leaf=2, class_weight="balanced", random_state=seed
        )

    def fit(self, detections: TextDetections, cache: Any = None) -> TextLeakage:
        """Fit on ``detections``; with ``cache`` (a folder or a
        :class:`~medprobe.features.FeatureStore`), reuse the fit of the same detections and
        settings. The permutation test is most of an audit's time once the detections are
        cached (about 530 forests whatever the dataset's size), and a study's rerun audits
        the same detections again."""
        key = fingerprint(
            "text-leakage",
            LEAKAGE_FORMAT,
            detections.digest(),
            self.get_params(),  # every setting: a new one cannot miss the key
            sklearn.__version__,  # the forests' fits change with it
        )
        state = read_cached(cache, key)
        if state is not None:
            return self._restore(state)
        self._fit(detections)
        write_cached(cache, key, self._state())
        return self

    def _state(self) -> dict[str, Any]:
        """The fitted attributes as JSON."""
        return {
            "format": LEAKAGE_FORMAT,
            "balanced_accuracy": asdict(self.balanced_accuracy_),
            "accuracy": asdict(self.accuracy_),
            "chance": self.chance_,
            "prior_accuracy": self.prior_accuracy_,
            "p_value": float(self.p_value_),
            "permutations": self.permutations_,
            "flagged": self.flagged_,
            "feature_names": self.feature_names_,
            "importances": {name: float(v) for name, v in self.importances_.items()},
            "correct": self.correct_.tolist(),
        }

    def _restore(self, state: dict[str, Any]) -> TextLeakage:
        """Set the fitted attributes saved by :meth:`_state`."""
        self.balanced_accuracy_ = Estimate(**state["balanced_accuracy"])
        self.accuracy_ = Estimate(**state["accuracy"])
        self.chance_ = state["chance"]
        self.prior_accuracy_ = state["prior_accuracy"]
        self.p_value_ = state["p_value"]
        self.permutations_ = state["permutations"]
        self.flagged_ = state["flagged"]
        self.feature_names_ = state["feature_names"]
        self.importances_ = state["importances"]
        self.correct_ = np.asarray(state["correct"], dtype=float)
        return self

    def _fit(self, detections: TextDetections) -> None:
        y = np.asarray(detections.labels)
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise MedprobeError("leakage needs images of at least two classes")
        if self.stop_after < 1:
            raise MedprobeError(f"stop_after must be at least 1, got {self.stop_after}")
        folds = min(self.n_splits, int(counts.min()))
        if folds < 2:
            raise MedprobeError("leakage needs at least 2 images in every class (cross-validation)")
        x, self.feature_names_ = ocr_features(detections, self.min_images)
        correct = np.zeros(len(y))
        for repeat in range(self.n_repeats):
            cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed + repeat)
            for train, test in cv.split(x, y):
                forest = self._forest(self.seed + repeat).fit(x[train], y[train])
                correct[test] += forest.predict(x[test]) == y[test]
        correct /= self.n_repeats
        self.correct_ = correct
        masks = [(y == c).astype(float) for c in classes]
        sizes = [m.sum() for m in masks]

        def balanced(idx: np.ndarray) -> np.ndarray:
            # stratified resamples keep each class's size, so per-class means divide by it
            return np.mean(
                [(correct[idx] * m[idx]).sum(1) / s for m, s in zip(masks, sizes, strict=True)], 0
            )

        boot = {"n_resamples": self.n_resamples, "seed": self.seed}
        self.balanced_accuracy_ = bootstrap(balanced, y, **boot)
        self.accuracy_ = bootstrap(lambda idx: correct[idx].mean(axis=1), y, **boot)
        self.chance_ = 1 / len(classes)
        self.prior_accuracy_ = float(counts.max() / counts.sum())
        self.p_value_, self.permutations_ = self._permutation_test(x, y, folds)
        self.flagged_ = bool(
            self.balanced_accuracy_.ci_low > self.chance_ and self.p_value_ < self.alpha
        )
        full = self._forest(self.seed).fit(x, y)
        self.importances_ = dict(
            sorted(
                zip(self.feature_names_, full.feature_importances_, strict=True),
                key=lambda kv: -kv[1],
            )
        )

    def _permutation_test(self, x: np.ndarray, y: np.ndarray, folds: int) -> tuple[float, int]:
        """The sequential permutation p-value of the cross-validated balanced accuracy and the
        number of permutations run. Permutations are drawn in order and scored in parallel
        batches; the stopping rule reads the scores in draw order, so the result does not
        depend on the number of processes."""
        cv = StratifiedKFold(folds, shuffle=True, random_state=self.seed)

        def score(labels: np.ndarray) -> float:
            forest = self._forest(self.seed)
            return float(
                cross_val_score(forest, x, labels, cv=cv, scoring="balanced_accuracy").mean()
            )

        observed = score(y)
        # the draws of scikit-learn's permutation_test_score with the same seed, drawn a
        # batch at a time: none is made past the stop
        rng = np.random.RandomState(self.seed)
        reached = run = 0
        step = effective_n_jobs(-1)  # one permutation per process, so little is wasted
        with Parallel(n_jobs=step) as parallel:
            while run < self.n_permutations:
                batch = [
                    y[rng.permutation(len(y))] for _ in range(min(step, self.n_permutations - run))
                ]
                for value in parallel(delayed(score)(labels) for labels in batch):
                    run += 1
                    reached += value >= observed
                    if reached == self.stop_after:
                        return reached / run, run
        return (reached + 1) / (run + 1), run

    def scores(self) -> dict[str, Estimate]:
        """Result-table metrics (the prior baselines as exact values)."""
        n = self.balanced_accuracy_.n
        return {
            "leakage_balanced_accuracy": self.balanced_accuracy_,
            "leakage_chance": Estimate.exact(self.chance_, n),
            "leakage_accuracy": self.accuracy_,
            "leakage_prior_accuracy": Estimate.exact(self.prior_accuracy_, n),
            "leakage_p_value": Estimate.exact(float(self.p_value_), n),
            "leakage_flagged": Estimate.exact(float(self.flagged_), n),
        }
