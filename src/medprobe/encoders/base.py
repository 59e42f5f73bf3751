"""The encoder interface every model, real or baseline, implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self

import numpy as np
import torch
from PIL import Image

from medprobe.encoders.spec import EncoderSpec
from medprobe.encoders.transforms import build_transform
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

    def __init__(self, spec: EncoderSpec) -> None:
        self.spec = spec
        self._transform = build_transform(spec.preprocessing)

    @property
    def name(self) -> str:
        return self.spec.name

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> the tensor the model sees, per the spec's preprocessing."""
        return self._transform(image)

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

    def fingerprint(self) -> str:
        """Identity of the features this encoder produces: spec plus any fitted state."""
        return fingerprint(self.spec.fingerprint(), self.weights_source or "", self.state())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"


class TorchEncoder(Encoder):
    """An encoder backed by a ``torch.nn.Module`` whose forward returns features."""

    def __init__(self, spec: EncoderSpec, module: torch.nn.Module, device: str = "cpu") -> None:
        super().__init__(spec)
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The model call; subclasses pick the embedding (projected / pooled / CLS)."""
        return self.module(batch)

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            out = self.forward(batch.to(self.device, non_blocking=True))
        return out.float().cpu().numpy()

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        """The text-tower call; VLM subclasses implement it."""
        raise MedprobeError(f"{self.spec.name} is a vision-only encoder; it has no text side")

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not self.has_text:
            return super().encode_texts(texts)
        with torch.inference_mode():
            return self.text_forward(list(texts)).float().cpu().numpy()
