"""2-D views of a feature distribution (the study's t-SNE/UMAP/PCA figures)."""

from __future__ import annotations

from dataclasses import field
from typing import Literal, Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA

from medprobe.analysis.base import analyser
from medprobe.analysis.stats import stratified_subsample
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet


@analyser
class Embedding2D(BaseEstimator):
    """Project features to 2-D with a seeded reducer: ``pca``, ``tsne`` (openTSNE, FFT
    gradients) or ``umap`` (umap-learn). ``embedding_`` is ``[N, 2]``; ``index_`` says which
    images were kept (at most ``max_points``, stratified and seeded: the same images for every
    model with the same ids).

    Features are L2-normalised first: CLIP-style models compare images by cosine similarity, so
    the view should show angles, not norms.
    """

    method: Literal["pca", "tsne", "umap"] = "pca"
    seed: int = field(default=0, kw_only=True)
    max_points: int = field(default=20_000, kw_only=True)
    perplexity: float = field(default=30.0, kw_only=True)

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        self.index_ = stratified_subsample(fs.labels, self.max_points, self.seed)
        x = np.asarray(fs.features, dtype=np.float32)[self.index_]
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        if self.method == "pca":
            out = PCA(n_components=2, random_state=self.seed).fit_transform(x)
        elif self.method == "tsne":
            from openTSNE import TSNE

            perplexity = min(self.perplexity, (len(x) - 1) / 3)
            out = np.asarray(
                TSNE(
                    n_components=2,
                    perplexity=perplexity,
                    random_state=self.seed,
                    n_jobs=2,
                    verbose=False,
                ).fit(x)
            )
        elif self.method == "umap":
            from umap import UMAP

            out = UMAP(
                n_components=2, random_state=self.seed, n_neighbors=min(15, len(x) - 1)
            ).fit_transform(x)
        else:
            raise MedprobeError(f"2-D method must be pca, tsne or umap; got {self.method!r}")
        self.embedding_ = np.asarray(out, dtype=np.float32)
        return self
