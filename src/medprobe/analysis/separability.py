"""Separability: how clustered the classes are in feature space, without training anything.

What the intervals cover. These indices change with the number of images (Calinski-Harabasz
grows with it; in high dimension the between-class scatter has a noise floor of about D / n),
so their intervals cover the value the index has, on average, on another sample of the same
size from the same population -- what comparing models on the same images needs. Values equal
scikit-learn's.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy.special import comb
from sklearn.cluster import KMeans

from medprobe.analysis.base import SubsampledAnalyser, analyser
from medprobe.analysis.stats import (
    Estimate,
    chunks,
    contained,
    grouped_sums,
    jackknife,
    resample_counts,
    z_value,
)
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet

#: images per block of the blocked pairwise-distance computations (memory ~ rows x n)
ROW_BLOCK = 512


class ClassMoments:
    """Per (jackknife block, class): image counts, feature sums and sums of squared norms of
    the features centred at their mean -- everything the scatter indices need, for all images
    and with each block left out, from one pass over the features."""

    def __init__(self, x: np.ndarray, y: np.ndarray, blocks: np.ndarray) -> None:
        self.k = int(y.max()) + 1
        self.g = int(blocks.max()) + 1
        self.centre = grouped_sums(x, np.zeros(len(x), dtype=np.int64), 1)[0] / len(x)
        codes = blocks * self.k + y
        size = self.g * self.k
        self.counts = np.bincount(codes, minlength=size).reshape(self.g, self.k).astype(float)
        sums = grouped_sums(x, codes, size) - self.counts.reshape(-1, 1) * self.centre
        self.sums = sums.reshape(self.g, self.k, -1)
        squares = np.zeros(size)
        for part in chunks(len(x)):
            c = np.asarray(x[part], dtype=np.float64) - self.centre
            squares += np.bincount(codes[part], weights=np.einsum("ij,ij->i", c, c), minlength=size)
        self.squares = squares.reshape(self.g, self.k)

    def totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Counts ``[R, K]``, sums ``[R, K, D]``, squares ``[R, K]`` of R = 1 + G sets: all
        images, then each block left out."""

        def leave_out(a: np.ndarray) -> np.ndarray:
            total = a.sum(axis=0)
            return np.concatenate([total[None], total[None] - a])

        return leave_out(self.counts), leave_out(self.sums), leave_out(self.squares)


def scatter_ratios(counts, sums, squares) -> tuple[np.ndarray, np.ndarray]:
    """Between- and within-class scatter (traces) of each set of moments."""
    n = np.where(counts.sum(axis=1) > 0, counts.sum(axis=1), np.nan)
    safe = np.where(counts > 0, counts, 1)
    class_part = (np.einsum("rkd,rkd->rk", sums, sums) / safe).sum(axis=1)
    total = sums.sum(axis=1)
    between = class_part - np.einsum("rd,rd->r", total, total) / n
    within = squares.sum(axis=1) - class_part
    return between, within


def fisher_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """tr(S_between) / tr(S_within): spread of class means over spread within classes."""
    moments = ClassMoments(x, np.unique(y, return_inverse=True)[1], np.zeros(len(x), int))
    between, within = scatter_ratios(*(t[:1] for t in moments.totals()))
    return float(between[0] / within[0]) if within[0] > 0 else float("inf")


def davies_bouldin_sets(
    x: np.ndarray, y: np.ndarray, blocks: np.ndarray, moments: ClassMoments
) -> np.ndarray:
    """Davies-Bouldin of all images and of each block left out (``[1 + G]``): mean over
    classes of max_j (s_i + s_j) / d(mu_i, mu_j), s_i the mean distance of class i's images to
    its centroid."""
    counts, sums, _ = moments.totals()
    r, k = counts.shape
    means = sums / np.where(counts > 0, counts, 1)[..., None] + moments.centre  # [R, K, D]
    spread = np.zeros((r, k))
    for c in range(k):
        members = np.flatnonzero(y == c)
        mu = means[:, c, :]  # [R, D]
        mu_sq = np.einsum("rd,rd->r", mu, mu)
        for part in chunks(len(members)):
            rows = members[part]
            xc = np.asarray(x[rows], dtype=np.float64)
            d2 = np.einsum("ij,ij->i", xc, xc)[:, None] - 2 * xc @ mu.T + mu_sq[None, :]
            dist = np.sqrt(np.clip(d2, 0, None))  # [rows, R]
            spread[:, c] += dist.sum(axis=0)
            # each image is absent from the set that leaves its block out
            np.subtract.at(
                spread[:, c], 1 + blocks[rows], dist[np.arange(len(rows)), 1 + blocks[rows]]
            )
    spread /= np.where(counts > 0, counts, 1)
    centre_dist = np.sqrt(((means[:, :, None, :] - means[:, None, :, :]) ** 2).sum(axis=3))
    ratio = (spread[:, :, None] + spread[:, None, :]) / np.where(
        centre_dist > 0, centre_dist, np.inf
    )
    ratio[:, np.arange(k), np.arange(k)] = -np.inf
    return ratio.max(axis=2).mean(axis=1)


def weighted_silhouettes(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, metric: str
) -> np.ndarray:
    """Mean silhouette of each weighting ``[B, n]`` of the images (bootstrap counts; a row of
    ones gives scikit-learn's ``silhouette_score``), recomputed per resample from blocked
    pairwise distances (never an n x n matrix).

    An image's own copies are left out of its a(i) (a duplicate at distance 0 is not a
    neighbour); an image alone in its class has silhouette 0.
    """
    from sklearn.metrics import pairwise_distances

    n, k = len(x), int(y.max()) + 1
    weights = np.asarray(weights, dtype=np.float64)
    onehot = np.eye(k)[y]
    per_class = weights @ onehot  # [B, K] class sizes per resample
    members = [np.flatnonzero(y == c) for c in range(k)]
    class_weights = [weights[:, m] for m in members]
    total = np.zeros(len(weights))
    for start in range(0, n, ROW_BLOCK):
        rows = slice(start, min(n, start + ROW_BLOCK))
        d = pairwise_distances(x[rows], x, metric=metric)  # [r, n]
        sums = np.stack([w @ d[:, m].T for w, m in zip(class_weights, members, strict=True)], 2)
        own = y[rows]
        w_self = weights[:, rows]
        r_idx = np.arange(len(own))
        others = per_class[:, own] - w_self  # same-class images other than i
        a = sums[:, r_idx, own] / np.where(others > 0, others, 1)
        mean_to = sums / np.where(per_class > 0, per_class, np.nan)[:, None, :]
        mean_to[:, r_idx, own] = np.inf
        b = np.nanmin(np.where(np.isnan(mean_to), np.inf, mean_to), axis=2)
        top = np.maximum(a, b)
        s = np.where(
            (others > 0) & (top > 0) & np.isfinite(b), (b - a) / np.where(top > 0, top, 1), 0.0
        )
        total += (w_self * s).sum(axis=1)
    return total / weights.sum(axis=1)


def contingency_scores(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NMI (arithmetic normalisation) and adjusted Rand index of contingency tables
    ``[R, labels, clusters]``, as scikit-learn computes them."""
    tables = np.asarray(tables, dtype=np.float64)
    n = tables.sum(axis=(1, 2))
    rows, cols = tables.sum(axis=2), tables.sum(axis=1)

    def entropy(counts):
        p = counts / n[:, None]
        return -np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0).sum(axis=1)

    h_rows, h_cols = entropy(rows), entropy(cols)
    p = tables / n[:, None, None]
    outer = (rows[:, :, None] * cols[:, None, :]) / n[:, None, None] ** 2
    mi = np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.where(outer > 0, outer, 1)), 0)
    mi = np.maximum(mi.sum(axis=(1, 2)), 0)
    norm = (h_rows + h_cols) / 2
    nmi = np.where(norm > 0, mi / np.where(norm > 0, norm, 1), 1.0)
    both_single = (h_rows == 0) & (h_cols == 0)
    nmi = np.where(both_single, 1.0, np.where((h_rows == 0) | (h_cols == 0), 0.0, nmi))
    pairs = comb(tables, 2).sum(axis=(1, 2))
    a, b = comb(rows, 2).sum(axis=1), comb(cols, 2).sum(axis=1)
    expected = a * b / comb(n, 2)
    top = (a + b) / 2
    ari = np.where(
        top != expected, (pairs - expected) / np.where(top != expected, top - expected, 1), 1.0
    )
    return nmi, ari


@analyser
class Separability(SubsampledAnalyser):
    """Silhouette (cosine, euclidean), Davies-Bouldin, Calinski-Harabasz, Fisher ratio, and the
    NMI / ARI between k-means clusters (k = number of classes) and the labels.

    Intervals, each valid for what it estimates (see the module docstring):

    - Davies-Bouldin, Calinski-Harabasz, Fisher ratio: on every image, with the
      delete-a-group jackknife (``n_blocks`` blocks of whole groups): a bootstrap resample's
      duplicated images shrink within-class scatter, so every bootstrap replicate falls on one
      side and its intervals can exclude their own estimate; leaving blocks out duplicates
      nothing.
    - Silhouettes: on a stratified subsample of ``max_samples`` images (they are quadratic in
      n), value +- z * the standard error of a stratified (cluster) bootstrap that recomputes
      every image's silhouette on each resample -- the per-image silhouettes depend on all
      other images, so resampling fixed per-image values understates the spread by half (the
      normal interval covered better than the percentile one in simulation).
    - k-means NMI / ARI: on the subsample, conditional on the clustering found (k-means'
      own variability is not included), delete-a-group jackknife of the contingency table.

    Lower is better only for Davies-Bouldin.
    """

    #: bootstrap resamples of the silhouettes
    n_resamples: int = 200

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        if len(np.unique(fs.labels)) < 2:
            raise MedprobeError(f"{fs.dataset!r} has fewer than 2 classes; separability needs 2")
        y = np.unique(fs.labels, return_inverse=True)[1]
        n, k = len(y), int(y.max()) + 1
        blocks = self._blocks(fs)
        moments = ClassMoments(fs.features, y, blocks)
        between, within = scatter_ratios(*moments.totals())
        fisher = between / within
        counts = moments.totals()[0].sum(axis=1)
        ch = fisher * (counts - k) / (k - 1)
        db = davies_bouldin_sets(fs.features, y, blocks, moments)
        scores: dict[str, Estimate] = {
            "davies_bouldin": jackknife(db[0], db[1:], n, self.confidence),
            "calinski_harabasz": jackknife(ch[0], ch[1:], n, self.confidence),
            "fisher_ratio": jackknife(fisher[0], fisher[1:], n, self.confidence),
        }
        sub = self._subsample(fs)
        ys = np.unique(sub.labels, return_inverse=True)[1]
        # the identity and every resample's counts: [1 + B, n], bounded by max_samples
        resamples = resample_counts(ys, sub.groups, self.n_resamples, self.seed)
        weights = np.concatenate([np.ones((1, len(ys)), dtype=np.float32), *resamples])
        z = z_value(self.confidence)
        for metric in ("cosine", "euclidean"):
            values = weighted_silhouettes(sub.features, ys, weights, metric)
            se = float(np.std(values[1:], ddof=1))
            low, high = max(-1.0, values[0] - z * se), min(1.0, values[0] + z * se)
            scores[f"silhouette_{metric}"] = contained(values[0], low, high, len(ys))
        clusters = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit_predict(sub.features)
        sub_blocks = self._blocks(sub)
        tables = np.zeros((int(sub_blocks.max()) + 1, k, k))
        np.add.at(tables, (sub_blocks, ys, clusters), 1.0)
        total = tables.sum(axis=0)
        nmi, ari = contingency_scores(np.concatenate([total[None], total[None] - tables]))
        scores["kmeans_nmi"] = jackknife(nmi[0], nmi[1:], len(ys), self.confidence)
        scores["kmeans_ari"] = jackknife(ari[0], ari[1:], len(ys), self.confidence)
        self.clusters_ = clusters
        self.scores_ = scores
        return self
