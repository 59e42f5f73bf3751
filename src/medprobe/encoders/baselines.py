"""Offline baseline encoders: they need no download and calibrate what pretraining adds.

- ``pixels``: the resized image itself, PCA-reduced (fitted on training images only).
- ``handcrafted``: colour histograms plus LBP and HOG texture (scikit-image).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Self

import numpy as np
import torch
from scipy import linalg
from scipy.linalg import blas
from skimage.color import rgb2gray, rgb2hsv
from skimage.feature import hog, local_binary_pattern
from sklearn.decomposition import PCA
from sklearn.utils.extmath import svd_flip

from medprobe.encoders.base import Encoder
from medprobe.encoders.options import BuildOptions
from medprobe.encoders.spec import EncoderSpec


class PixelEncoder(Encoder):
    """Raw pixels of the resized image, projected on the top principal components.

    The PCA basis is fitted on the training split (no labels involved), so test images never
    shape the features they are scored with. With few training images the unused components
    are zero, so the feature length stays the spec's ``embed_dim``.
    """

    requires_fit = True

    def __init__(self, spec: EncoderSpec, options: BuildOptions | None = None) -> None:
        super().__init__(spec, options)
        self.n_components = int(spec.options.get("n_components", spec.embed_dim))
        self.components_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.n_samples_ = 0

    def fit(self, batches: torch.Tensor | Iterable[torch.Tensor]) -> Self:
        """PCA of the training images, streamed with memory bounded by D^2 (75 MB for 32x32
        RGB) whatever their number. Up to D images are kept and decomposed by scikit-learn's
        full SVD; past D, their float64 D x D scatter (about the first batch's mean, against
        cancellation) is accumulated in place batch by batch (BLAS ``syrk``: no D x D
        temporary per batch) and only the top components are eigen-decomposed, in place, as
        scikit-learn's ``covariance_eigh`` solver does, with its sign convention. Holding the
        scatter, a centred copy and a full eigen-decomposition peaked at about 4 D^2 doubles
        (+0.2 GB over the kept-images path, so a 20,000-image set needed 20% more memory than
        a 2,000-image one)."""
        batches = [batches] if isinstance(batches, torch.Tensor) else batches
        kept: list[np.ndarray] | None = []
        n, shift, total, scatter = 0, None, None, None
        for batch in batches:
            flat = batch.flatten(1).numpy().astype(np.float64)
            if shift is None:
                shift = flat.mean(axis=0)
                total = np.zeros_like(shift)
                scatter = np.zeros((len(shift), len(shift)), order="F")  # BLAS updates in place
            flat -= shift
            n += len(flat)
            total += flat.sum(axis=0)
            if kept is not None:
                kept.append(flat)
                if n <= len(shift):
                    continue
                pending, kept = kept, None  # past D images: the scatter is smaller
            else:
                pending = [flat]
            for part in pending:  # upper triangle of scatter += part.T @ part
                blas.dsyrk(1.0, part, beta=1.0, c=scatter, trans=1, lower=0, overwrite_c=1)
            del pending
        if not n:
            raise ValueError("PixelEncoder.fit needs at least one image")
        # Components near the rank of a small training set are noise that standardising probes
        # would amplify; keep at most half as many components as training images.
        dim = len(shift)
        k = max(1, min(self.n_components, n // 2, dim))
        if kept is not None:
            pca = PCA(n_components=k, svd_solver="full", random_state=0).fit(np.concatenate(kept))
            self.components_, self.mean_ = pca.components_, shift + pca.mean_
        else:
            offset = total / n
            # the scatter about the mean (a positive multiple of the covariance: same vectors)
            blas.dsyr(-float(n), offset, a=scatter, lower=0, overwrite_a=1)
            _, vectors = linalg.eigh(
                scatter,
                lower=False,
                subset_by_index=(dim - k, dim - 1),
                overwrite_a=True,
                check_finite=False,
                driver="evr",
            )
            _, self.components_ = svd_flip(None, vectors[:, ::-1].T, u_based_decision=False)
            self.mean_ = shift + offset
        self.n_samples_ = n
        return self

    def state(self) -> bytes:
        if self.components_ is None or self.mean_ is None:
            return b""
        return self.components_.astype(np.float32).tobytes() + self.mean_.tobytes()

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        if self.components_ is None or self.mean_ is None:
            raise RuntimeError("PixelEncoder must be fitted on training images first")
        out = (batch.flatten(1).numpy().astype(np.float64) - self.mean_) @ self.components_.T
        if out.shape[1] < self.n_components:  # fewer training images than components
            out = np.pad(out, ((0, 0), (0, self.n_components - out.shape[1])))
        return out.astype(np.float32)


class HandcraftedEncoder(Encoder):
    """Classical lesion descriptors: what a pre-deep-learning pipeline would have used.

    Colour: an HSV joint histogram (8x4x4 bins) plus per-channel RGB mean/std. Texture: uniform
    LBP histograms at radii 1 and 3, and a HOG descriptor of the grey image. Each of the five
    descriptors is L2-normalised before concatenation.
    """

    _HSV_BINS = (8, 4, 4)
    _LBP = ((8, 1.0), (16, 3.0))

    def _one(self, image: np.ndarray) -> np.ndarray:
        hsv = rgb2hsv(image).reshape(-1, 3)
        hist, _ = np.histogramdd(hsv, bins=self._HSV_BINS, range=((0, 1),) * 3)
        parts = [hist.ravel() / hsv.shape[0], image.mean(axis=(0, 1)), image.std(axis=(0, 1))]
        grey = (rgb2gray(image) * 255).astype(np.uint8)
        for points, radius in self._LBP:
            codes = local_binary_pattern(grey, points, radius, method="uniform")
            lbp, _ = np.histogram(codes, bins=points + 2, range=(0, points + 2))
            parts.append(lbp / codes.size)
        cell = max(grey.shape[0] // 4, 4)
        parts.append(
            hog(grey, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))
        )
        # Each descriptor is L2-normalised so that none dominates distances by its length
        # (HOG alone has ~10x more entries than the colour histogram).
        return np.concatenate([p / max(np.linalg.norm(p), 1e-12) for p in parts])

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        images = batch.clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float64)
        return np.stack([self._one(img) for img in images]).astype(np.float32)


def load_baseline(spec: EncoderSpec, options: BuildOptions) -> Encoder:
    """Loader for ``library == "baseline"`` specs: numpy code, so they run on the CPU in fp32
    whatever device was asked for (a reduced precision asked for explicitly is refused)."""
    kinds = {"pixels": PixelEncoder, "handcrafted": HandcraftedEncoder}
    return kinds[spec.architecture](spec, replace(options, device="cpu"))
