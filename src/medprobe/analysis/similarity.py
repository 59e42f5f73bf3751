"""Cross-model similarity of representations: linear CKA and mutual kNN alignment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator

from medprobe.analysis.base import analyser
from medprobe.analysis.probes import faiss_neighbours
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet


def _hsic_unbiased_linear(x: np.ndarray, y: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC with linear kernels, in O(n d) (no n x n Gram matrix).

    With K = X X^T and K~ = K with a zero diagonal: tr(K~ L~), 1^T K~ 1 and 1^T K~ L~ 1 all
    expand into feature-space sums.
    """
    n = len(x)
    kx, ky = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)  # diagonals
    sx, sy = x.sum(axis=0), y.sum(axis=0)
    trace_kl = float(np.sum((x.T @ y) ** 2) - np.sum(kx * ky))
    row_k, row_l = x @ sx - kx, y @ sy - ky  # K~ 1 and L~ 1
    sum_k, sum_l = row_k.sum(), row_l.sum()
    return (trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * float(row_k @ row_l) / (n - 2)) / (
        n * (n - 3)
    )


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
        num = _hsic_unbiased_linear(x, y)
        den = np.sqrt(_hsic_unbiased_linear(x, x) * _hsic_unbiased_linear(y, y))
        return float(num / den)
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return float(np.sum((x.T @ y) ** 2) / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mean over images of |kNN_x(i) & kNN_y(i)| / k (cosine neighbours, self excluded)."""
    k = min(k, len(x) - 1)
    nx = faiss_neighbours(x, x, k + 1)[:, 1:]
    ny = faiss_neighbours(y, y, k + 1)[:, 1:]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny, strict=True)]))


def aligned(featuresets: Sequence[FeatureSet]) -> list[np.ndarray]:
    """Features of several models on the same images, rows in the same image order."""
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
        rows = np.argsort([order[i] for i in fs.ids])
        out.append(np.asarray(fs.features, dtype=np.float64)[rows])
    return out


@analyser
class CrossModel(BaseEstimator):
    """Models x models matrices of linear CKA and mutual-kNN alignment on one dataset."""

    unbiased: bool = True
    k: int = 10

    def fit(self, featuresets: Sequence[FeatureSet]) -> Self:
        features = aligned(featuresets)
        m = len(features)
        self.encoders_ = [fs.encoder for fs in featuresets]
        self.cka_ = np.eye(m)
        self.mutual_knn_ = np.eye(m)
        for i in range(m):
            for j in range(i + 1, m):
                self.cka_[i, j] = self.cka_[j, i] = linear_cka(
                    features[i], features[j], unbiased=self.unbiased
                )
                self.mutual_knn_[i, j] = self.mutual_knn_[j, i] = mutual_knn(
                    features[i], features[j], self.k
                )
        return self
