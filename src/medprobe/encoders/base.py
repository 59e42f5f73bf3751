"""The encoder interface every model, real or baseline, implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import numpy as np
import torch
from PIL import Image

from medprobe.encoders.spec import EncoderSpec
from medprobe.encoders.transforms import build_geometry, normalize
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint


class Encoder(ABC):
    """Maps images to feature vectors.

    ``preprocess`` turns one PIL RGB image into a tensor (it runs in data-loading workers, so it
    must be cheap to pickle); ``encode_images`` maps a stacked batch to float32 ``[N, D]``.
    Encoders with ``requires_fit`` (e.g. pixels + PCA) learn an unsupervised transform from the
    training images first; their fitted state is part of :meth:`fingerprint`.
    """

    requires_fit: bool = False
    #: The exact weights used: a hub commit hash or a local path (set by hub/local loaders).
    weights_source: str | None = None
    #: Content hash of the weight files (set by loaders; part of every cache key).
    weights_digest: str | None = None
    #: ``create_encoder`` arguments that rebuild this encoder elsewhere (Ray workers).
    recipe: dict | None = None

    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self._geometry = build_geometry(spec.preprocessing)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def geometry(self):
        """The picklable image -> uint8 tensor step (what data-loading workers run)."""
        return self._geometry

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch from :attr:`geometry` -> the float batch :meth:`encode_images` takes."""
        return normalize(batch, self.spec.preprocessing)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> the float tensor the model sees, per the spec's preprocessing."""
        return self.normalize(self._geometry(image).unsqueeze(0))[0]

    @abstractmethod
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """A batch ``[N, 3, S, S]`` from :meth:`preprocess` -> float32 features ``[N, D]``."""

    @property
    def has_text(self) -> bool:
        """Whether :meth:`encode_texts` is available (vision-language models)."""
        return self.spec.text is not None

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> float32 ``[N, D]`` in the image embedding space (VLMs only)."""
        raise MedprobeError(f"{self.spec.name} is a vision-only encoder; it has no text side")

    def fit(self, batch: torch.Tensor) -> Self:
        """Learn an unsupervised transform from training images (no labels). Default: nothing."""
        return self

    def state(self) -> bytes:
        """Bytes that identify learned state beyond the spec (fitted transforms, weights)."""
        return b""

    def identity(self) -> str:
        """Spec, weights and their content hash: what a feature cache key needs. (A fitted
        transform is a deterministic function of the spec and the training images, which the
        dataset part of the key covers.)"""
        return fingerprint(
            self.spec.fingerprint(), self.weights_source or "", self.weights_digest or ""
        )

    def fingerprint(self) -> str:
        """Identity of the features this encoder produces now: identity plus fitted state."""
        return fingerprint(self.identity(), self.state())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"


class TorchEncoder(Encoder):
    """An encoder backed by a ``torch.nn.Module`` whose forward returns features."""

    def __init__(self, spec: EncoderSpec, module: torch.nn.Module, device: str = "cpu") -> None:
        super().__init__(spec)
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        #: "bf16" or "fp16" autocast on GPU; CPU always runs fp32 (reproducible features).
        self.precision = "fp32"
        if self.device.type == "cuda":  # conv nets run faster channels-last on GPU
            self.module = self.module.to(memory_format=torch.channels_last)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        # On a GPU the uint8 batch is moved first and normalised there.
        return super().normalize(batch.to(self.device, non_blocking=True))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The model call; subclasses pick the embedding (projected / pooled / CLS)."""
        return self.module(batch)

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        batch = batch.to(self.device, non_blocking=True)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        use_amp = self.device.type == "cuda" and dtype is not None
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=use_amp):
            out = self.forward(batch)
        return out.float().cpu().numpy()

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        """The text-tower call; VLM subclasses implement it."""
        raise MedprobeError(f"{self.spec.name} is a vision-only encoder; it has no text side")

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not self.has_text:
            return super().encode_texts(texts)
        with torch.inference_mode():
            return self.text_forward(list(texts)).float().cpu().numpy()
