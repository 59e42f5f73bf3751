"""The encoder interface every model, real or baseline, implements.

An encoder is immutable once built: :func:`medprobe.encoders.create_encoder` hands its loader a
:class:`BuildOptions` (device, precision, weights path, remote-code opt-in) and the loader hands
the constructor the :class:`WeightsRef` it resolved, so nothing is patched onto an encoder
afterwards. Everything that changes its numbers is part of :meth:`Encoder.identity` (and so of
every feature cache key), and :attr:`Encoder.recipe` rebuilds the same encoder elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Self

import numpy as np
import torch
from PIL import Image

from medprobe.encoders.layers import FINAL, Tap, block_taps, capture, final_tap, find_blocks
from medprobe.encoders.options import PRECISIONS, BuildOptions, Precision, WeightsRef
from medprobe.encoders.spec import EncoderSpec
from medprobe.encoders.transforms import LAYOUT, build_geometry, normalize
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _check_taps(encoder: Encoder, taps: Sequence[Tap]) -> None:
    own = set(encoder.layers())
    foreign = [t.name for t in taps if t not in own]
    if foreign:
        raise MedprobeError(
            f"{encoder.name} has no layer {', '.join(map(repr, foreign))}; its layers: "
            f"{', '.join(t.name for t in encoder.layers())}"
        )


class Encoder(ABC):
    """Maps images to feature vectors.

    ``preprocess`` turns one PIL RGB image into a tensor (it runs in data-loading workers, so it
    must be cheap to pickle); ``encode_images`` maps a stacked batch to float32 ``[N, D]``.
    Encoders with ``requires_fit`` (e.g. pixels + PCA) learn an unsupervised transform from the
    training images first; their fitted state is part of :meth:`fingerprint`.
    """

    requires_fit: bool = False
    #: Precisions this encoder can compute in (numpy baselines: fp32 only).
    precisions: tuple[str, ...] = ("fp32",)

    def __init__(
        self,
        spec: EncoderSpec,
        options: BuildOptions | None = None,
        weights: WeightsRef | None = None,
    ) -> None:
        options = options or BuildOptions()
        if options.precision not in self.precisions:
            raise MedprobeError(
                f"{spec.name} computes in {', '.join(self.precisions)} only; precision "
                f"{options.precision!r} does not apply to it"
            )
        self._spec = spec
        self._options = options
        self._weights = weights or WeightsRef()
        self._geometry = build_geometry(spec.preprocessing)

    @property
    def spec(self) -> EncoderSpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def precision(self) -> Precision:
        """The numeric precision of the forward pass (fp32, bf16 or fp16)."""
        return self._options.precision

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return torch.device(self._options.device)

    @property
    def weights_source(self) -> str | None:
        """The exact weights used: ``repo@commit`` or a local path (None: no weights file)."""
        return self._weights.source

    @property
    def weights_digest(self) -> str | None:
        """Content hash of the weight files (part of every cache key)."""
        return self._weights.digest

    @property
    def recipe(self) -> dict[str, Any]:
        """``create_encoder`` arguments that rebuild this encoder elsewhere (Ray actors)."""
        o = self._options
        return {
            "name_or_spec": self._spec,
            "device": o.device,
            "precision": o.precision,
            "weights": o.weights,
            "trust_remote_code": o.trust_remote_code,
        }

    @property
    def geometry(self):
        """The picklable image -> uint8 tensor step (what data-loading workers run)."""
        return self._geometry

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch from :attr:`geometry` -> the float batch :meth:`encode_images` takes."""
        return normalize(batch, self._spec.preprocessing)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB image -> the float tensor the model sees, per the spec's preprocessing."""
        return self.normalize(self._geometry(image).unsqueeze(0))[0]

    @abstractmethod
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """A batch ``[N, 3, S, S]`` from :meth:`preprocess` -> float32 features ``[N, D]``."""

    def layers(self) -> tuple[Tap, ...]:
        """The named taps features can be read at, in network order, ``final`` last
        (:mod:`medprobe.encoders.layers`); encoders without blocks have ``final`` only."""
        return (final_tap(self._spec.embed_dim),)

    def encode_layers(self, batch: torch.Tensor, taps: Sequence[Tap]) -> dict[str, np.ndarray]:
        """A batch from :meth:`preprocess` -> float32 ``[N, tap.dim]`` features of every tap in
        ``taps``, from one forward pass; ``final`` is exactly :meth:`encode_images`' output."""
        _check_taps(self, taps)
        return {FINAL: self.encode_images(batch)}

    @property
    def has_text(self) -> bool:
        """Whether :meth:`encode_texts` is available (vision-language models)."""
        return self._spec.text is not None

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Texts -> float32 ``[N, D]`` in the image embedding space (VLMs only)."""
        raise MedprobeError(f"{self._spec.name} is a vision-only encoder; it has no text side")

    def fit(self, batches: torch.Tensor | Iterable[torch.Tensor]) -> Self:
        """Learn an unsupervised transform from training images (no labels), given as one
        batch or streamed as several. Default: nothing."""
        return self

    def state(self) -> bytes:
        """Bytes that identify learned state beyond the spec (fitted transforms, weights)."""
        return b""

    def identity(self) -> str:
        """What a feature cache key needs: spec, weights and their content hash, precision and
        the kind of device (GPU kernels give other low bits than CPU ones; the GPU index does
        not matter). A fitted transform is a deterministic function of the spec and the
        training images, which the dataset part of the key covers."""
        return fingerprint(
            self._spec.fingerprint(),
            self.weights_source or "",
            self.weights_digest or "",
            self.precision,
            self.device.type,
        )

    def fingerprint(self) -> str:
        """Identity of the features this encoder produces now: identity plus fitted state."""
        return fingerprint(self.identity(), self.state())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self._spec.name!r}, device={self._options.device!r}, "
            f"precision={self.precision!r})"
        )


class TorchEncoder(Encoder):
    """An encoder backed by a ``torch.nn.Module`` whose forward returns features.

    The module is placed on the device and cast to the precision when the encoder is built (like
    ``open_clip.create_model(..., precision=, device=)``); bf16/fp16 also run under autocast, on
    the CPU too (torch's CPU autocast), so reduced precision is really computed everywhere and is
    part of the identity.
    """

    precisions = PRECISIONS

    def __init__(
        self,
        spec: EncoderSpec,
        module: torch.nn.Module,
        options: BuildOptions | None = None,
        weights: WeightsRef | None = None,
    ) -> None:
        super().__init__(spec, options, weights)
        # Channels-last: oneDNN's and cuDNN's fast convolution layout (MobileNetV3 and ResNet-50
        # forwards 1.5x faster on CPU in fp32, about 5x in bf16/fp16); only 4-D tensors change.
        self._layout = LAYOUT
        self._module = module.eval().to(self.device, dtype=self.dtype).to(memory_format=LAYOUT)
        self._taps: tuple[Tap, ...] | None = None

    @property
    def module(self) -> torch.nn.Module:
        return self._module

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        # On a GPU the uint8 batch is moved first and normalised there.
        return super().normalize(batch.to(self.device, non_blocking=True))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The model call; subclasses pick the embedding (projected / pooled / CLS)."""
        return self._module(batch)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.precision != "fp32")

    def _on_device(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, dtype=self.dtype, non_blocking=True)
        return batch.contiguous(memory_format=self._layout)

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode(), self._autocast():
            out = self.forward(self._on_device(batch))
        return out.float().cpu().numpy()

    def layers(self) -> tuple[Tap, ...]:
        """Every block / stage of the image tower (found by :func:`find_blocks`; widths from
        one probe forward of a blank image) and ``final``. Blocks the model's forward does
        not run through (remote code with its own path) are not offered."""
        if self._taps is None:
            blocks, found = find_blocks(self._module), []
            if blocks is not None:
                size = self._spec.preprocessing.image_size
                probe = torch.zeros(1, 3, size, size)
                shapes_of = [Tap(p, "mean", 0, 0.0, p) for p in blocks.paths]
                with capture(self._module, shapes_of, shapes=True) as shapes:
                    self.encode_images(probe)
                if len(shapes) == len(blocks.paths):
                    found = block_taps(blocks, [shapes[p] for p in blocks.paths])
            self._taps = (*found, final_tap(self._spec.embed_dim))
        return self._taps

    def encode_layers(self, batch: torch.Tensor, taps: Sequence[Tap]) -> dict[str, np.ndarray]:
        _check_taps(self, taps)
        blocks = [t for t in taps if t.name != FINAL]
        with capture(self._module, blocks) as pooled, torch.inference_mode(), self._autocast():
            out = self.forward(self._on_device(batch))
        found = {t.name: pooled[t.name].float().cpu().numpy() for t in blocks}
        return {**found, FINAL: out.float().cpu().numpy()}

    def identity(self) -> str:
        """:meth:`Encoder.identity` plus the memory layout the module runs in."""
        return fingerprint(super().identity(), str(self._layout))

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        """The text-tower call; VLM subclasses implement it."""
        raise MedprobeError(f"{self._spec.name} is a vision-only encoder; it has no text side")

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not self.has_text:
            return super().encode_texts(texts)
        with torch.inference_mode(), self._autocast():
            return self.text_forward(list(texts)).float().cpu().numpy()
