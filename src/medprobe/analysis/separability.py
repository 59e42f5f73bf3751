"""Separability: how clustered the classes are in feature space, without training anything."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_samples,
)

from medprobe.analysis.stats import Estimate, bootstrap, stratified_subsample
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet


def fisher_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """tr(S_between) / tr(S_within): spread of class means over spread within classes."""
    mean = x.mean(axis=0)
    between = within = 0.0
    for cls in np.unique(y):
        members = x[y == cls]
        centre = members.mean(axis=0)
        between += len(members) * float(np.sum((centre - mean) ** 2))
        within += float(np.sum((members - centre) ** 2))
    return between / within if within > 0 else float("inf")


class Separability:
    """Silhouette (cosine, euclidean), Davies-Bouldin, Calinski-Harabasz, Fisher ratio, and the
    NMI / ARI between k-means clusters (k = number of classes) and the labels.

    Silhouettes are computed on at most ``max_samples`` images (a stratified, seeded subsample:
    the exact score is quadratic in n); the score is the mean of per-image silhouettes and its CI
    resamples them. Davies-Bouldin, Calinski-Harabasz and Fisher are recomputed on each resample
    with bias-corrected intervals (duplicated images in a resample bias them). NMI/ARI CIs
    resample the (cluster, label) pairs of the one clustering. Lower is better only for
    Davies-Bouldin.
    """

    def __init__(
        self,
        *,
        n_resamples: int = 200,
        confidence: float = 0.95,
        seed: int = 0,
        max_samples: int = 10_000,
    ) -> None:
        self.n_resamples = n_resamples
        self.confidence = confidence
        self.seed = seed
        self.max_samples = max_samples

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        x, y = np.asarray(fs.features, dtype=np.float64), fs.labels
        if len(np.unique(y)) < 2:
            raise MedprobeError(f"{fs.dataset!r} has fewer than 2 classes; separability needs 2")
        boot = {"n_resamples": self.n_resamples, "confidence": self.confidence, "seed": self.seed}
        scores: dict[str, Estimate] = {}
        keep = stratified_subsample(y, self.max_samples, self.seed)
        for metric in ("cosine", "euclidean"):
            per_image = silhouette_samples(x[keep], y[keep], metric=metric)
            scores[f"silhouette_{metric}"] = bootstrap(
                lambda idx, s=per_image: s[idx].mean(axis=1), y[keep], **boot
            )

        def resampled(score):
            return lambda idx: np.array([score(x[row], y[row]) for row in idx])

        for name, score in (
            ("davies_bouldin", davies_bouldin_score),
            ("calinski_harabasz", calinski_harabasz_score),
            ("fisher_ratio", fisher_ratio),
        ):
            scores[name] = bootstrap(resampled(score), y, bias_corrected=True, **boot)
        k = len(np.unique(y))
        clusters = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit_predict(x)
        for name, score in (
            ("kmeans_nmi", normalized_mutual_info_score),
            ("kmeans_ari", adjusted_rand_score),
        ):
            scores[name] = bootstrap(
                lambda idx, f=score: np.array([f(y[row], clusters[row]) for row in idx]),
                y,
                bias_corrected=True,
                **boot,
            )
        self.clusters_ = clusters
        self.scores_ = scores
        return self
