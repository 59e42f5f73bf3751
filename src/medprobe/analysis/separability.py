"""Separability: how clustered the classes are in feature space, without training anything."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_samples

from medprobe.analysis.stats import Estimate, bootstrap
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet


class Separability:
    """Silhouette (cosine and euclidean), Davies-Bouldin and Calinski-Harabasz over all images.

    The silhouette score is the mean of per-image silhouettes; its CI resamples those per-image
    values (stratified by class). Davies-Bouldin and Calinski-Harabasz are recomputed on each
    resample, with bias-corrected intervals (duplicated images in a resample bias them).
    Higher is better except for Davies-Bouldin.
    """

    def __init__(self, *, n_resamples: int = 200, confidence: float = 0.95, seed: int = 0) -> None:
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.seed = seed

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        x, y = fs.features.astype(np.float64), fs.labels
        if len(np.unique(y)) < 2:
            raise MedprobeError(f"{fs.dataset!r} has fewer than 2 classes; separability needs 2")
        boot = {"n_resamples": self.n_resamples, "confidence": self.confidence, "seed": self.seed}
        scores: dict[str, Estimate] = {}
        for metric in ("cosine", "euclidean"):
            per_image = silhouette_samples(x, y, metric=metric)
            scores[f"silhouette_{metric}"] = bootstrap(
                lambda idx, s=per_image: s[idx].mean(axis=1), y, **boot
            )

        def resampled(score):
            return lambda idx: np.array([score(x[row], y[row]) for row in idx])

        for name, score in (
            ("davies_bouldin", davies_bouldin_score),
            ("calinski_harabasz", calinski_harabasz_score),
        ):
            scores[name] = bootstrap(resampled(score), y, bias_corrected=True, **boot)
        self.scores_ = scores
        return self
