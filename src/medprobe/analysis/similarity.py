"""Cross-model similarity of representations: linear CKA and mutual kNN alignment.

Linear CKA (unbiased HSIC) carries a delete-a-group jackknife interval computed from per-block
sufficient statistics (cross-products, sums, squared norms), two passes over the features,
never an n x n Gram matrix. Mutual kNN carries no interval: it is a neighbourhood statistic
whose value depends on the sample size through the neighbourhood scale, resampling with
replacement makes duplicates each other's neighbours, and leaving images out changes every
neighbourhood; no resampling scheme is known to be valid for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator

from medprobe.analysis.base import analyser
from medprobe.analysis.probes import Neighbours, faiss_neighbours, search_neighbours
from medprobe.analysis.stats import (
    Estimate,
    chunks,
    jackknife,
    jackknife_blocks,
    stratified_subsample,
)
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet


class _Rows:
    """One model's features in the reference image order, read in float64 chunks centred at
    their mean (HSIC is translation invariant; centring keeps the sums well conditioned)."""

    def __init__(self, features: np.ndarray, order: np.ndarray) -> None:
        self.features, self.order = features, order
        total = np.zeros(features.shape[1])
        for part in chunks(len(order)):
            total += np.asarray(features[order[part]], dtype=np.float64).sum(axis=0)
        self.centre = total / len(order)

    def chunk(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.features[self.order[rows]], dtype=np.float64) - self.centre


def hsic_sets(x: _Rows, y: _Rows, blocks: np.ndarray) -> np.ndarray:
    """Song et al. (2012) unbiased HSIC with linear kernels of all images and of each block
    left out (``[1 + G]``), from per-block sufficient statistics.

    With K = X X^T and K~ = K with a zero diagonal, tr(K~ L~), 1^T K~ 1 and 1^T K~ L~ 1 all
    expand into sums over images of x_i, y_i, |x_i|^2, |y_i|^2 and of the cross-product
    X^T Y; leaving a block out subtracts its part.
    """
    g = int(blocks.max()) + 1
    d_x, d_y = len(x.centre), len(y.centre)
    counts = np.bincount(blocks, minlength=g).astype(np.float64)
    sx, sy = np.zeros((g, d_x)), np.zeros((g, d_y))
    a, b = np.zeros((g, d_y)), np.zeros((g, d_x))  # sum |x|^2 y and sum |y|^2 x
    skx, sky, skl = np.zeros(g), np.zeros(g), np.zeros(g)
    cross = np.zeros((d_x, d_y))
    for b_i in range(g):
        rows = np.flatnonzero(blocks == b_i)
        xc, yc = x.chunk(rows), y.chunk(rows)
        kx, ky = np.einsum("ij,ij->i", xc, xc), np.einsum("ij,ij->i", yc, yc)
        sx[b_i], sy[b_i] = xc.sum(axis=0), yc.sum(axis=0)
        a[b_i], b[b_i] = kx @ yc, ky @ xc
        skx[b_i], sky[b_i], skl[b_i] = kx.sum(), ky.sum(), kx @ ky
        cross += xc.T @ yc

    def hsic(n, m_norm2, sx_, sy_, a_, b_, skx_, sky_, skl_, sx_m_sy):
        trace_kl = m_norm2 - skl_
        row_kl = sx_m_sy - a_ @ sy_ - b_ @ sx_ + skl_
        sum_k, sum_l = sx_ @ sx_ - skx_, sy_ @ sy_ - sky_
        return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * row_kl / (n - 2)) / (
            n * (n - 3)
        )

    out = np.empty(1 + g)
    tot = [v.sum(axis=0) for v in (counts, sx, sy, a, b, skx, sky, skl)]
    n, sx_t, sy_t, a_t, b_t, skx_t, sky_t, skl_t = tot
    out[0] = hsic(
        n, float(np.sum(cross**2)), sx_t, sy_t, a_t, b_t, skx_t, sky_t, skl_t, sx_t @ cross @ sy_t
    )
    for b_i in range(g):  # second pass: each block's cross-product, left out of the total
        if n - counts[b_i] < 4:  # the estimator needs 4 images
            out[1 + b_i] = np.nan
            continue
        rows = np.flatnonzero(blocks == b_i)
        rest = cross - x.chunk(rows).T @ y.chunk(rows)
        sx_r, sy_r = sx_t - sx[b_i], sy_t - sy[b_i]
        out[1 + b_i] = hsic(
            n - counts[b_i],
            float(np.sum(rest**2)),
            sx_r,
            sy_r,
            a_t - a[b_i],
            b_t - b[b_i],
            skx_t - skx[b_i],
            sky_t - sky[b_i],
            skl_t - skl[b_i],
            sx_r @ rest @ sy_r,
        )
    return out


def linear_cka(x: np.ndarray, y: np.ndarray, *, unbiased: bool = True) -> float:
    """Linear CKA between two representations of the same n images.

    ``unbiased=True`` (default) uses the unbiased HSIC estimator, whose value for unrelated
    representations is ~0 at any n; the biased estimator (Kornblith et al. 2019) is inflated
    when n is small relative to the dimension.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if unbiased:
        if len(x) < 4:
            raise MedprobeError("unbiased CKA needs at least 4 images")
        order, one = np.arange(len(x)), np.zeros(len(x), dtype=np.int64)
        rx, ry = _Rows(x, order), _Rows(y, order)
        num = hsic_sets(rx, ry, one)[0]
        return float(num / np.sqrt(hsic_sets(rx, rx, one)[0] * hsic_sets(ry, ry, one)[0]))
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return float(np.sum((x.T @ y) ** 2) / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def self_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """Each image's ``k`` nearest other images (cosine, exact), sorted by index. The image
    itself is dropped wherever the search placed it (an exact duplicate may come first)."""
    k = min(k, len(x) - 1)
    found = faiss_neighbours(x, x, k + 1)
    is_self = found == np.arange(len(x))[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(found, dtype=bool)
    keep[np.arange(len(x)), drop] = False
    return np.sort(found[keep].reshape(len(x), k), axis=1)


def mutual_knn_of(nx: np.ndarray, ny: np.ndarray) -> float:
    """Mean over images of |kNN_x(i) & kNN_y(i)| / k, from the two neighbour lists."""
    shared = (nx[:, :, None] == ny[:, None, :]).any(axis=2).sum(axis=1)
    return float(np.mean(shared / nx.shape[1]))


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean over images of |kNN_x(i) & kNN_y(i)| / k (cosine neighbours, self excluded)."""
    return mutual_knn_of(self_neighbours(x, k), self_neighbours(y, k))


def alignment(featuresets: Sequence[FeatureSet]) -> list[np.ndarray]:
    """For each FeatureSet, the row order that puts its images in the first one's order
    (models compared on the same images); no feature is copied."""
    reference = featuresets[0]
    order = {image: i for i, image in enumerate(reference.ids)}
    out = []
    for fs in featuresets:
        if fs.dataset != reference.dataset or set(fs.ids) != set(order):
            missing = len(set(order) ^ set(fs.ids))
            raise MedprobeError(
                f"cannot compare {fs.encoder} with {reference.encoder}: they were extracted on "
                f"different images ({missing} differ); compare models on the same dataset"
            )
        fs.check_finite()
        out.append(np.argsort([order[i] for i in fs.ids]))
    return out


def _shared_neighbours(
    featuresets: Sequence[FeatureSet], found: Sequence[Neighbours], k: int
) -> tuple[list[np.ndarray], int]:
    """Each model's first ``k`` neighbours of the query images shared by every model, as
    codes of image ids (so models extracted in another order still compare image by image)."""
    vocabulary = np.unique(featuresets[0].ids)
    common = None
    for fs, nb in zip(featuresets, found, strict=True):
        ids = fs.ids[nb.queries]
        common = set(ids) if common is None else common & set(ids)
    order = np.array(sorted(common))
    out = []
    for fs, nb in zip(featuresets, found, strict=True):
        train_ids = fs.ids[fs.splits == "train"]  # not fs.split(): that copies the features
        position = {image: i for i, image in enumerate(fs.ids[nb.queries])}
        rows = nb.indices[[position[i] for i in order], :k]
        out.append(np.sort(np.searchsorted(vocabulary, train_ids[rows]), axis=1))
    return out, len(order)


@analyser
class CrossModel(BaseEstimator):
    """Models x models matrices of linear CKA (``cka_``, with jackknife intervals in
    ``cka_low_`` / ``cka_high_``) and mutual-kNN alignment (``mutual_knn_``).

    Mutual kNN compares each model's ``k`` nearest training images of the test images scored
    by the kNN probe (pass the probes' :class:`~medprobe.analysis.probes.Neighbours` to reuse
    their search); a dataset without train and test splits compares each image's nearest other
    images on a stratified subsample of at most ``max_samples``. ``n_mutual_`` is the number
    of images compared."""

    unbiased: bool = True
    k: int = 10
    n_blocks: int = field(default=30, kw_only=True)
    max_samples: int = field(default=5_000, kw_only=True)
    confidence: float = field(default=0.95, kw_only=True)
    seed: int = field(default=0, kw_only=True)

    def fit(
        self, featuresets: Sequence[FeatureSet], neighbours: Sequence[Neighbours] | None = None
    ) -> Self:
        orders = alignment(featuresets)
        reference = featuresets[0]
        m, n = len(featuresets), len(reference)
        if n < 4:
            raise MedprobeError("unbiased CKA needs at least 4 images")
        blocks = jackknife_blocks(reference.labels, reference.groups, self.n_blocks, self.seed)
        rows = [_Rows(fs.features, o) for fs, o in zip(featuresets, orders, strict=True)]
        self_hsic = [hsic_sets(r, r, blocks) for r in rows]
        lists = self._neighbour_lists(featuresets, orders, neighbours)
        self.encoders_ = [fs.encoder for fs in featuresets]
        self.cka_, self.mutual_knn_ = np.eye(m), np.eye(m)
        self.cka_low_, self.cka_high_ = np.eye(m), np.eye(m)
        for i in range(m):
            for j in range(i + 1, m):
                if self.unbiased:
                    sets = hsic_sets(rows[i], rows[j], blocks)
                    cka = sets / np.sqrt(self_hsic[i] * self_hsic[j])
                    est = jackknife(cka[0], cka[1:], n, self.confidence)
                else:
                    pair = (featuresets[i].features[orders[i]], featuresets[j].features[orders[j]])
                    est = Estimate.without_interval(linear_cka(*pair, unbiased=False), n)
                self.cka_[i, j] = self.cka_[j, i] = est.value
                self.cka_low_[i, j] = self.cka_low_[j, i] = est.ci_low
                self.cka_high_[i, j] = self.cka_high_[j, i] = est.ci_high
                self.mutual_knn_[i, j] = self.mutual_knn_[j, i] = mutual_knn_of(lists[i], lists[j])
        return self

    def _neighbour_lists(self, featuresets, orders, neighbours) -> list[np.ndarray]:
        reference = featuresets[0]
        split = reference.splits
        if neighbours is None and (split == "train").any() and (split == "test").any():
            neighbours = [
                search_neighbours(fs, self.k, max_samples=self.max_samples, seed=self.seed)
                for fs in featuresets
            ]
        if neighbours is not None:
            lists, self.n_mutual_ = _shared_neighbours(featuresets, neighbours, self.k)
            self.mutual_subsampled_ = any(nb.subsampled for nb in neighbours)
            return lists
        keep = stratified_subsample(reference.labels, self.max_samples, self.seed)
        self.n_mutual_, self.mutual_subsampled_ = len(keep), len(keep) < len(reference)
        return [
            self_neighbours(fs.features[o[keep]], self.k)
            for fs, o in zip(featuresets, orders, strict=True)
        ]
