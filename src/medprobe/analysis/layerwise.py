"""Layer-wise analyses: where in a network the class information is, and how layers compare.

:class:`LayerCKA` is the layer x layer unbiased linear CKA of every pair of (model, layer)
feature sets on the same images (each model with itself included), with delete-a-group
jackknife intervals. It works from Gram matrices of a stratified subsample of at most
``max_samples`` images, so a pair costs O(n^2) after each layer's O(n^2 d) Gram: layer x layer
matrices have many pairs of wide layers, where the feature-space route of
:mod:`medprobe.analysis.similarity` would pay O(n d^2) per pair. Memory: one ``n x n``
float64 Gram per layer (8 MB per layer at the default 1,000 images).

:func:`best_layer` picks each model's best layer by the linear probe's cross-validated
balanced accuracy on the *training* images (never the test images it is then scored on, so
the paired difference with the final layer is not inflated by the choice) and compares it
with ``final`` image by image on the test split
(:func:`~medprobe.analysis.stats.paired_difference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Self

import numpy as np
from sklearn.base import BaseEstimator

from medprobe.analysis.base import analyser
from medprobe.analysis.probes import LinearProbe
from medprobe.analysis.similarity import alignment
from medprobe.analysis.stats import (
    PairedDifference,
    jackknife,
    jackknife_blocks,
    paired_difference,
    stratified_subsample,
)
from medprobe.encoders.layers import FINAL
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet


class _Gram:
    """One layer's centred Gram matrix with a zero diagonal (``K~``) on the subsample, and
    the per-block sums its leave-a-block-out HSICs need."""

    def __init__(self, features: np.ndarray, onehot: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float64)
        x = x - x.mean(axis=0)  # HSIC is translation invariant; centring conditions the sums
        self.k = x @ x.T
        np.fill_diagonal(self.k, 0.0)
        self.by_block = self.k @ onehot  # [n, B]: each image's sum over each block
        self.rows = self.by_block.sum(axis=1)


def _hsic(n, trace, sum_k, sum_l, row_kl):
    """Song et al. (2012) unbiased HSIC from its four sums (arrays: one per subset)."""
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2 * row_kl / (n - 2)) / (n * (n - 3))


def _block_total(total: float, per_block: np.ndarray) -> np.ndarray:
    """A sum over pairs of images with one block left out, from the B x B block sums."""
    return total - 2 * per_block.sum(axis=1) + np.diag(per_block)


def hsic_leave_out(a: _Gram, b: _Gram, onehot: np.ndarray) -> np.ndarray:
    """Unbiased HSIC of all images and of each block left out (``[1 + B]``)."""
    counts = onehot.sum(axis=0)
    n = float(len(onehot))
    product = a.k * b.k
    blocks_prod = onehot.T @ product @ onehot
    blocks_a, blocks_b = onehot.T @ a.by_block, onehot.T @ b.by_block
    outside = 1.0 - onehot  # [n, B]: image i is kept when block B is left out
    rows_a = (a.rows[:, None] - a.by_block) * outside
    rows_b = (b.rows[:, None] - b.by_block) * outside
    whole = _hsic(n, blocks_prod.sum(), blocks_a.sum(), blocks_b.sum(), float(a.rows @ b.rows))
    rest = n - counts
    with np.errstate(divide="ignore", invalid="ignore"):
        left_out = _hsic(
            rest,
            _block_total(blocks_prod.sum(), blocks_prod),
            _block_total(blocks_a.sum(), blocks_a),
            _block_total(blocks_b.sum(), blocks_b),
            np.einsum("ib,ib->b", rows_a, rows_b),
        )
    left_out[rest < 4] = np.nan  # the estimator needs 4 images
    return np.concatenate([[whole], left_out])


@analyser
class LayerCKA(BaseEstimator):
    """Unbiased linear CKA between every pair of feature sets (``cka_``, ``[M, M]``, the
    diagonal computed like any other entry) with jackknife intervals (``cka_low_``,
    ``cka_high_``); ``n_`` images compared, ``subsampled_`` whether fewer than the data."""

    max_samples: int = 1_000
    n_blocks: int = field(default=30, kw_only=True)
    confidence: float = field(default=0.95, kw_only=True)
    seed: int = field(default=0, kw_only=True)

    def fit(self, featuresets: Sequence[FeatureSet]) -> Self:
        if not featuresets:
            raise MedprobeError("layer CKA needs at least one feature set")
        orders = alignment(featuresets)
        reference = featuresets[0]
        keep = stratified_subsample(reference.labels, self.max_samples, self.seed)
        self.n_, self.subsampled_ = len(keep), len(keep) < len(reference)
        if self.n_ < 4:
            raise MedprobeError("unbiased CKA needs at least 4 images")
        groups = reference.groups[keep] if reference.groups is not None else None
        blocks = jackknife_blocks(reference.labels[keep], groups, self.n_blocks, self.seed)
        onehot = np.eye(int(blocks.max()) + 1)[blocks]
        grams = [
            _Gram(fs.features[o[keep]], onehot) for fs, o in zip(featuresets, orders, strict=True)
        ]
        own = [hsic_leave_out(g, g, onehot) for g in grams]
        m = len(grams)
        self.cka_, self.cka_low_, self.cka_high_ = (np.full((m, m), np.nan) for _ in range(3))
        for i in range(m):
            for j in range(i, m):
                with np.errstate(divide="ignore", invalid="ignore"):
                    cka = hsic_leave_out(grams[i], grams[j], onehot) / np.sqrt(own[i] * own[j])
                est = jackknife(float(cka[0]), cka[1:], self.n_, self.confidence)
                for matrix, value in zip(
                    (self.cka_, self.cka_low_, self.cka_high_),
                    (est.value, est.ci_low, est.ci_high),
                    strict=True,
                ):
                    matrix[i, j] = matrix[j, i] = value
        return self


def probe_cv_score(probe: LinearProbe) -> float:
    """The fitted probe's best cross-validated (or validation-split) score on the training
    images: the mean over folds at its chosen regularisation."""
    return float(probe.cv_scores_.mean(axis=0).max())


def best_layer(
    probes: Mapping[str, LinearProbe],
    *,
    groups: np.ndarray | None = None,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[str, PairedDifference]:
    """The layer whose probe scored best in cross-validation on the training images (ties:
    the later layer of ``probes``' order), and its test balanced accuracy minus ``final``'s on
    the same test images (paired, class-balanced; ``groups`` of the test images)."""
    if FINAL not in probes:
        raise MedprobeError("the best-layer comparison needs the final layer's probe")
    scores = {name: probe_cv_score(p) for name, p in probes.items()}
    best = max(reversed(list(scores)), key=scores.__getitem__)
    final, chosen = probes[FINAL], probes[best]
    if not np.array_equal(final.y_true_, chosen.y_true_):
        raise MedprobeError("layers were scored on different test images")
    correct = [(p.y_pred_ == p.y_true_).astype(np.float64) for p in (chosen, final)]
    difference = paired_difference(
        *correct, final.y_true_, groups, balanced=True, confidence=confidence, seed=seed
    )
    return best, difference
