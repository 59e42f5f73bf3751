"""2-D views of a feature distribution (the study's t-SNE/UMAP/PCA figures)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import field
from functools import wraps
from typing import Literal, Self

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA

from medprobe.analysis.base import analyser
from medprobe.analysis.stats import stratified_subsample
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet
from medprobe.paths import default_cache_dir


@contextmanager
def compiled_once() -> Iterator[None]:
    """Keep numba's machine code for umap-learn (and pynndescent) on disk.

    numba compiles UMAP's functions on first use in every process (seconds on a quiet
    machine, minutes on a busy one); umap-learn does not ask numba to cache them. Inside this
    block ``numba.njit`` caches by default, in ``<medprobe cache>/numba`` unless
    ``NUMBA_CACHE_DIR`` says otherwise, so the next process loads the compiled code. numba's
    warnings about functions it cannot cache (the user cannot act on them) are not shown.
    """
    import numba
    from numba.core import config
    from numba.core.errors import NumbaWarning

    original, cache_dir = numba.njit, config.CACHE_DIR

    @wraps(original)
    def njit(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return original(*args, **kwargs)

    numba.njit = njit
    if not os.environ.get("NUMBA_CACHE_DIR"):
        config.CACHE_DIR = str(default_cache_dir() / "numba")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumbaWarning)
            yield
    finally:
        numba.njit, config.CACHE_DIR = original, cache_dir


#: up to this many points t-SNE uses Barnes-Hut on one thread and a shorter schedule
TSNE_SMALL = 5_000


def tsne(x: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """openTSNE with its parameters chosen by data size.

    Small data (at most ``TSNE_SMALL`` points): Barnes-Hut gradients on one thread (openTSNE's
    own choice below 10,000 points; threads cost more than they save at this size, and on a
    shared machine they spin) and 125 early-exaggeration + 250 iterations instead of 250 + 500
    (measured at 240 and 2,000 points: KL divergence within 1.2% of the long schedule, the
    same cluster separation). Larger data: FFT-accelerated gradients on every core, the default
    schedule. The learning rate is openTSNE's automatic n / exaggeration (Belkina et al.
    2019); the KL divergence is not evaluated during the optimisation.
    """
    from openTSNE import TSNE

    small = len(x) <= TSNE_SMALL
    schedule = {"early_exaggeration_iter": 125, "n_iter": 250} if small else {}
    return np.asarray(
        TSNE(
            n_components=2,
            perplexity=min(perplexity, (len(x) - 1) / 3),
            random_state=seed,
            negative_gradient_method="bh" if small else "fft",
            n_jobs=1 if small else -1,
            verbose=False,
            **schedule,
        ).fit(x)
    )


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
            out = tsne(x, self.perplexity, self.seed)
        elif self.method == "umap":
            with compiled_once():
                from umap import UMAP

                # seeded UMAP runs single-threaded anyway; saying so keeps it from warning
                out = UMAP(
                    n_components=2,
                    random_state=self.seed,
                    n_neighbors=min(15, len(x) - 1),
                    n_jobs=1,
                ).fit_transform(x)
        else:
            raise MedprobeError(f"2-D method must be pca, tsne or umap; got {self.method!r}")
        self.embedding_ = np.asarray(out, dtype=np.float32)
        return self
