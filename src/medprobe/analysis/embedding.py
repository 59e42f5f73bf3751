"""2-D views of a feature distribution (the study's t-SNE/UMAP/PCA figures)."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from sklearn.decomposition import PCA

from medprobe.features.featureset import FeatureSet


class Embedding2D:
    """Project features to 2-D with a seeded reducer; ``embedding_`` is ``[N, 2]``.

    Features are L2-normalised first: CLIP-style models compare images by cosine similarity, so
    the view should show angles, not norms.
    """

    def __init__(self, method: Literal["pca"] = "pca", *, seed: int = 0) -> None:
        self.method = method
        self.seed = seed

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        x = fs.features / np.maximum(np.linalg.norm(fs.features, axis=1, keepdims=True), 1e-12)
        reducer = PCA(n_components=2, random_state=self.seed)
        self.embedding_ = reducer.fit_transform(x).astype(np.float32)
        self.explained_variance_ratio_ = reducer.explained_variance_ratio_
        return self
