"""Separability: how clustered the classes are in feature space, without training anything."""

from __future__ import annotations

from typing import Self

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples

from medprobe.analysis.base import SubsampledAnalyser, analyser
from medprobe.analysis.stats import Estimate, bootstrap
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet


def _weighted_scatter(x: np.ndarray, y: np.ndarray, idx: np.ndarray):
    """Per resample (rows of ``idx``), the class sizes, class means and total mean, computed
    with resample counts as weights (one matrix product instead of a loop over resamples)."""
    b, n = idx.shape
    weights = np.zeros((b, len(x)))
    np.add.at(weights, (np.arange(b)[:, None], idx), 1.0)
    classes = np.unique(y)
    sizes = np.stack([weights[:, y == c].sum(axis=1) for c in classes], axis=1)  # [B, K]
    sums = np.stack([weights[:, y == c] @ x[y == c] for c in classes], axis=1)  # [B, K, D]
    means = sums / sizes[..., None]
    total = sums.sum(axis=1) / n  # [B, D]
    return weights, classes, sizes, means, total


def fisher_ratio_resampled(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """:func:`fisher_ratio` of every resample ``x[idx[b]]``, vectorised."""
    weights, _, sizes, means, total = _weighted_scatter(x, y, idx)
    between = (sizes * ((means - total[:, None, :]) ** 2).sum(axis=2)).sum(axis=1)
    within = weights @ np.einsum("ij,ij->i", x, x) - (sizes * (means**2).sum(axis=2)).sum(axis=1)
    return between / within


def calinski_harabasz_resampled(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Calinski-Harabasz = (between / (k - 1)) / (within / (n - k)), per resample."""
    k, n = len(np.unique(y)), idx.shape[1]
    return fisher_ratio_resampled(x, y, idx) * (n - k) / (k - 1)


def davies_bouldin_resampled(x: np.ndarray, y: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Davies-Bouldin per resample: mean over classes of max_j (s_i + s_j) / d(mu_i, mu_j), where
    s_i is the mean distance of class i's images to its centroid."""
    weights, classes, sizes, means, _ = _weighted_scatter(x, y, idx)
    norms = np.einsum("ij,ij->i", x, x)
    spread = []
    for c_i, c in enumerate(classes):
        members = y == c
        mu = means[:, c_i, :]  # [B, D]
        d2 = norms[members][None, :] - 2 * mu @ x[members].T + (mu**2).sum(axis=1)[:, None]
        dist = np.sqrt(np.clip(d2, 0, None))
        spread.append((weights[:, members] * dist).sum(axis=1) / sizes[:, c_i])
    s = np.stack(spread, axis=1)  # [B, K]
    centre_dist = np.sqrt(((means[:, :, None, :] - means[:, None, :, :]) ** 2).sum(axis=3))
    k = len(classes)
    ratio = (s[:, :, None] + s[:, None, :]) / np.where(centre_dist > 0, centre_dist, np.inf)
    ratio[:, np.arange(k), np.arange(k)] = -np.inf
    return ratio.max(axis=2).mean(axis=1)


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


@analyser
class Separability(SubsampledAnalyser):
    """Silhouette (cosine, euclidean), Davies-Bouldin, Calinski-Harabasz, Fisher ratio, and the
    NMI / ARI between k-means clusters (k = number of classes) and the labels.

    Everything is computed on at most ``max_samples`` images (a stratified, seeded subsample:
    silhouettes are quadratic in n). The silhouette score is the mean of per-image silhouettes
    and its CI resamples them. Davies-Bouldin, Calinski-Harabasz and Fisher are recomputed on
    each resample (vectorised, with resample counts as weights) with bias-corrected intervals
    (duplicated images in a resample bias them). NMI/ARI CIs resample the (cluster, label)
    pairs of the one clustering. Lower is better only for Davies-Bouldin.
    """

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        if len(np.unique(fs.labels)) < 2:
            raise MedprobeError(f"{fs.dataset!r} has fewer than 2 classes; separability needs 2")
        x, y = self._subsample(fs)
        boot = self._boot()
        scores: dict[str, Estimate] = {}
        for metric in ("cosine", "euclidean"):
            per_image = silhouette_samples(x, y, metric=metric)
            scores[f"silhouette_{metric}"] = bootstrap(
                lambda idx, s=per_image: s[idx].mean(axis=1), y, **boot
            )
        for name, resampled in (
            ("davies_bouldin", davies_bouldin_resampled),
            ("calinski_harabasz", calinski_harabasz_resampled),
            ("fisher_ratio", fisher_ratio_resampled),
        ):
            scores[name] = bootstrap(
                lambda idx, f=resampled: f(x, y, idx), y, bias_corrected=True, **boot
            )
        k = len(np.unique(y))
        clusters = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit_predict(x)
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
