"""Declarative encoder specs: everything needed to say exactly how features were made."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medprobe.fingerprint import fingerprint

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
NO_NORM_MEAN = (0.0, 0.0, 0.0)
NO_NORM_STD = (1.0, 1.0, 1.0)

Library = Literal[
    "baseline", "open_clip", "transformers", "timm", "custom", "hi-ml-multimodal", "conch"
]
Domain = Literal["medical", "general", "baseline", "unknown"]
Embedding = Literal["projected", "pooled", "cls", "pixels", "handcrafted"]
ResizeMode = Literal["resize_center_crop", "squash", "pad", "pad_bottom_right"]
Interpolation = Literal["bicubic", "bilinear", "nearest"]
#: Whose resize/crop code makes the pixels: PIL's (torchvision, open_clip and timm transforms
#: on PIL images) or the transformers image processor's (a torchvision resize on uint8 tensors).
Backend = Literal["pil", "transformers"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Preprocessing(_Frozen):
    """How an image becomes the tensor the model sees.

    ``resize_center_crop`` resizes the shorter side to ``resize_size`` (default ``image_size``)
    and crops the centre to ``image_size`` (CLIP/open_clip default; DINOv2 resizes to 256, crops
    224); ``squash`` resizes both sides to ``resize_size`` (default ``image_size``) ignoring the
    aspect ratio, then crops the centre to ``image_size`` (timm's squash); ``pad`` pads to a
    square with black, then resizes; ``pad_bottom_right`` resizes the longer side to
    ``image_size`` keeping the aspect ratio and zero-pads the bottom and right (FLAIR).
    ``backend`` names the library whose resize code runs (see :data:`Backend`); ``grey``
    converts to 8-bit grey first (PIL ``L``) and repeats it on three channels, as the chest
    X-ray libraries do (hi-ml's BioViL, MedCLIP).
    """

    image_size: int = Field(gt=0)
    resize_size: int | None = Field(None, gt=0)
    resize_mode: ResizeMode = "resize_center_crop"
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    backend: Backend = "pil"
    grey: bool = False

    def describe(self) -> str:
        """One line for reports: ``224px resize_center_crop bicubic mean=(...) std=(...)``."""
        mean = ", ".join(f"{v:.3f}" for v in self.mean)
        std = ", ".join(f"{v:.3f}" for v in self.std)
        return (
            f"{self.image_size}px {self.resize_mode} {self.interpolation} mean=({mean}) std=({std})"
        )


class TextSide(_Frozen):
    """The text tower of a vision-language model.

    ``padding="max_length"`` is what SigLIP models were trained with; CLIP pads to the longest.
    """

    tokenizer: str
    context_length: int = Field(gt=0)
    padding: Literal["longest", "max_length"] = "longest"


class EncoderSpec(_Frozen):
    """A declarative description of one image encoder.

    ``library`` selects the loader; ``architecture`` is what that loader builds (an open_clip
    model name, a timm model name, a transformers class, or a baseline kind); ``options`` holds
    loader-specific arguments. The spec's fingerprint is part of every feature cache key.
    """

    name: str
    aliases: tuple[str, ...] = ()
    library: Library
    architecture: str
    hub_id: str | None = None
    revision: str | None = None
    domain: Domain
    subdomain: str
    embed_dim: int = Field(gt=0)
    embedding: Embedding
    preprocessing: Preprocessing
    text: TextSide | None = None
    license: str
    trust_remote_code: bool = False
    notes: str = ""
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _processor_backend(self) -> EncoderSpec:
        # A transformers model sees the pixels of its image processor's own resize code.
        if self.library == "transformers" and self.preprocessing.backend != "transformers":
            raise ValueError(f"{self.name}: a transformers spec needs backend='transformers'")
        return self

    def fingerprint(self) -> str:
        """Hash of every field: a changed revision, size or mean/std changes the key."""
        return fingerprint(self.model_dump(mode="json"))

    def describe(self) -> dict[str, str]:
        """Short provenance fields for tables and reports."""
        return {
            "encoder": self.name,
            "domain": self.domain,
            "subdomain": self.subdomain,
            "library": self.library,
            "source": self.hub_id or self.architecture,
            "revision": self.revision or "-",
            "embedding": f"{self.embedding} ({self.embed_dim}-d)",
            "preprocessing": self.preprocessing.describe(),
        }
