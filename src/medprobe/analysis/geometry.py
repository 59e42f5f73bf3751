"""Geometry of a feature distribution: effective rank, intrinsic dimension, anisotropy, and
the modality gap between image and text embeddings."""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy.stats import chi2
from sklearn.neighbors import NearestNeighbors

from medprobe.analysis.base import SubsampledAnalyser, analyser
from medprobe.analysis.stats import Estimate, bootstrap
from medprobe.analysis.zeroshot import unit_rows
from medprobe.features.featureset import FeatureSet


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy) of the normalised singular values of the centred features (Roy & Vetterli)."""
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def twonn(x: np.ndarray, confidence: float = 0.95) -> Estimate:
    """TwoNN intrinsic dimension (Facco et al. 2017), maximum-likelihood form.

    mu = r2 / r1 follows a Pareto law with shape d, so sum(log mu) ~ Gamma(n, 1/d): the CI is
    exact from chi-square quantiles. Images with a duplicate (r1 = 0) are left out.
    """
    distances = NearestNeighbors(n_neighbors=3).fit(x).kneighbors(x)[0]
    r1, r2 = distances[:, 1], distances[:, 2]
    ok = r1 > 0
    log_mu = np.log(r2[ok] / r1[ok])
    n = int(ok.sum())
    d = n / log_mu.sum()
    low, high = chi2.ppf([(1 - confidence) / 2, (1 + confidence) / 2], 2 * n) / (2 * n) * d
    return Estimate(float(d), float(low), float(high), n)


def anisotropy(x: np.ndarray) -> float:
    """Mean cosine similarity between distinct images (0: isotropic, 1: all one direction)."""
    u = unit_rows(x)
    total = u.sum(axis=0)
    n = len(u)
    return float((total @ total - n) / (n * (n - 1)))


def modality_gap(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> float:
    """Distance between the centroids of L2-normalised image and text embeddings (Liang 2022)."""
    return float(
        np.linalg.norm(unit_rows(image_embeddings).mean(0) - unit_rows(text_embeddings).mean(0))
    )


@analyser
class Geometry(SubsampledAnalyser):
    """Effective rank, TwoNN intrinsic dimension, anisotropy, and (given class text embeddings)
    the modality gap. Computed on at most ``max_samples`` images (stratified, seeded)."""

    def fit(self, fs: FeatureSet, text_embeddings: np.ndarray | None = None) -> Self:
        fs.check_finite()
        x, y = self._subsample(fs)
        boot = self._boot()
        u = unit_rows(x)

        def mean_cosine(idx: np.ndarray) -> np.ndarray:
            totals = u[idx].sum(axis=1)
            n = idx.shape[1]
            return (np.einsum("bd,bd->b", totals, totals) - n) / (n * (n - 1))

        self.scores_ = {
            "effective_rank": bootstrap(
                lambda idx: np.array([effective_rank(x[row]) for row in idx]),
                y,
                bias_corrected=True,
                **{**boot, "n_resamples": min(self.n_resamples, 50)},
            ),
            "intrinsic_dimension_twonn": twonn(x, self.confidence),
            "anisotropy": bootstrap(mean_cosine, y, **boot),
        }
        if text_embeddings is not None:
            t = unit_rows(text_embeddings).mean(axis=0)
            self.scores_["modality_gap"] = bootstrap(
                lambda idx: np.linalg.norm(u[idx].mean(axis=1) - t, axis=1), y, **boot
            )
        return self
