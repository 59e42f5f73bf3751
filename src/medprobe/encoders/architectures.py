"""Architectures of releases that ship a bare checkpoint and their own model code.

Each module here has the parameter names and shapes of the release's own model class, so the
released file loads with ``strict=True`` (through :func:`medprobe.encoders.loading.load_exact`),
and its ``encode_image`` / ``encode_text`` compute what the release's own methods compute. The
building blocks are the field's libraries (torchvision ResNet-50, open_clip's CLIP
``ModifiedResNet``, timm ViT, transformers BERT/Swin); only the glue is ours. Sources:

- PMC-CLIP: ``WeixiongLin/PMC-CLIP`` ``src/pmc_clip/model/pmc_clip.py`` + ``blocks.py`` and
  ``model_configs/RN50_fusion4.json`` (RN50 ``ModifiedResNet``, width 64, 32 heads = width*32 /
  head_width 64, 768-d; text: ``last_hidden_state`` at [CLS] @ ``text_projection``).
- FLAIR: ``jusiro/FLAIR`` ``flair/modeling/model.py`` (``VisionModel`` / ``TextModel`` /
  ``ProjectionLayer``: L2-norm, bias-free 512-d projection, L2-norm).
- MedCLIP: ``RyanWangZf/MedCLIP`` ``medclip/modeling_medclip.py`` (``MedCLIPVisionModel``: ResNet-50
  whose ``fc`` is the 512-d projection; ``MedCLIPVisionModelViT``: Swin-T ``pooler_output`` @
  ``projection_head``; ``MedCLIPTextModel``: mean of hidden states 1, 2 and last @
  ``projection_head``).
- KEEP: ``MAGIC-AI4Med/KEEP`` ``quick_start/keep_inference.py`` (the hub's ``KEEPModel``: timm
  ViT-L/16 + GELU MLP head, BERT ``pooler_output``; both L2-normalised).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from medprobe.encoders.loading import read_state_dict
from medprobe.encoders.spec import EncoderSpec
from medprobe.errors import MedprobeError

_ARCHITECTURES: dict[str, type[Architecture]] = {}


def architecture(name: str) -> Callable[[type[Architecture]], type[Architecture]]:
    """Register an :class:`Architecture` under the spec ``architecture`` name that selects it."""

    def add(cls: type[Architecture]) -> type[Architecture]:
        _ARCHITECTURES[name] = cls
        return cls

    return add


def get_architecture(name: str) -> type[Architecture]:
    if name not in _ARCHITECTURES:
        raise MedprobeError(f"unknown architecture {name!r}; known: {', '.join(_ARCHITECTURES)}")
    return _ARCHITECTURES[name]


def _bert(folder: Path) -> nn.Module:
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig.from_pretrained(folder))


def _width(bert: nn.Module) -> int:
    """The text tower's hidden size (768 for every released BERT-base tower)."""
    return bert.config.hidden_size


def _extra(extras: dict[str, Path], spec: EncoderSpec, index: int = 0) -> Path:
    repo = spec.options["extra_repos"][index].partition("@")[0]
    return extras[repo]


def _first(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"none of {', '.join(names)} in {folder}")


class Architecture(nn.Module, ABC):
    """A release's model: built from its config, loaded from its files, encodes images/texts."""

    #: Weight files of the release, in order of preference (the spec's ``options['files']``
    #: say which of the hub repository's files are downloaded).
    files: ClassVar[tuple[str, ...]] = ("model.safetensors", "pytorch_model.bin")

    @classmethod
    @abstractmethod
    def build(cls, spec: EncoderSpec, folder: Path, extras: dict[str, Path]) -> Architecture:
        """The architecture with random weights (its config from the release / extra repos)."""

    @classmethod
    def release_state(cls, folder: Path) -> dict[str, Any]:
        """The state dict as the release stores it (one file unless a subclass says otherwise)."""
        return read_state_dict(folder if folder.is_file() else _first(folder, cls.files))

    @staticmethod
    def tokenizer_folder(spec: EncoderSpec, folder: Path, extras: dict[str, Path]) -> Path:
        """Where the tokenizer files are (default: the first extra repository)."""
        return _extra(extras, spec)

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor: ...


def _mean_of_layers_1_2_last(output: Any) -> torch.Tensor:
    """FLAIR's and MedCLIP's text pooling: hidden states 1, 2 and last, averaged over tokens and
    then over the three layers."""
    hidden = output["hidden_states"]
    return torch.stack([hidden[1], hidden[2], hidden[-1]]).permute(1, 0, 2, 3).mean(2).mean(1)


@architecture("pmc-clip-rn50")
class PMCClip(Architecture):
    """PMC-CLIP: CLIP RN50 ``ModifiedResNet`` (768-d attention pool) + PubMedBERT."""

    files = ("image_encoder(resnet50).pth", "text_encoder.pth", "text_projection_layer.pth")

    def __init__(self, text_folder: Path) -> None:
        from open_clip.modified_resnet import ModifiedResNet

        super().__init__()
        self.visual = ModifiedResNet(
            layers=(3, 4, 6, 3), output_dim=768, heads=32, image_size=224, width=64
        )
        self.text_encoder = _bert(text_folder)
        self.text_projection = nn.Parameter(torch.empty(_width(self.text_encoder), 768))

    @classmethod
    def build(cls, spec, folder, extras):
        return cls(_extra(extras, spec))

    @classmethod
    def release_state(cls, folder: Path) -> dict[str, Any]:
        image, text, projection = (read_state_dict(folder / name) for name in cls.files)
        return {
            **{f"visual.{k}": v for k, v in image.items()},
            **{f"text_encoder.{k}": v for k, v in text.items()},
            "text_projection": projection[""],
        }

    def encode_image(self, pixels):
        return self.visual(pixels)

    def encode_text(self, input_ids, attention_mask):
        hidden = self.text_encoder(input_ids=input_ids).last_hidden_state
        return hidden[:, 0] @ self.text_projection  # [CLS] is the first token


class _Projected(nn.Module):
    """FLAIR's ``ProjectionLayer``: L2-norm, bias-free linear projection, L2-norm."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.projection = nn.Linear(dim_in, dim_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(F.normalize(x, dim=-1)), dim=-1)


def _resnet50(fc: nn.Module) -> nn.Module:
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.fc = fc
    return model


@architecture("flair-resnet50")
class Flair(Architecture):
    """FLAIR: torchvision ResNet-50 + Bio_ClinicalBERT, 512-d normalised projections."""

    files = ("model.safetensors", "pytorch_model.bin", "flair_resnet.pth")

    def __init__(self, text_folder: Path) -> None:
        super().__init__()
        self.vision_model = nn.Module()
        self.vision_model.model = _resnet50(nn.Identity())
        self.vision_model.projection_head_vision = _Projected(2048, 512)
        self.text_model = nn.Module()
        self.text_model.model = _bert(text_folder)
        self.text_model.projection_head_text = _Projected(_width(self.text_model.model), 512)
        self.logit_scale = nn.Parameter(torch.zeros(()))

    @classmethod
    def build(cls, spec, folder, extras):
        return cls(_extra(extras, spec))

    def encode_image(self, pixels):
        return self.vision_model.projection_head_vision(self.vision_model.model(pixels))

    def encode_text(self, input_ids, attention_mask):
        out = self.text_model.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        return self.text_model.projection_head_text(_mean_of_layers_1_2_last(out))


class _MedCLIP(Architecture):
    files = ("pytorch_model.bin",)

    def __init__(self, vision: nn.Module, text_folder: Path) -> None:
        super().__init__()
        self.vision_model = vision
        self.text_model = nn.Module()
        self.text_model.model = _bert(text_folder)
        self.text_model.projection_head = nn.Linear(_width(self.text_model.model), 512, bias=False)
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def encode_text(self, input_ids, attention_mask):
        out = self.text_model.model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        return F.normalize(self.text_model.projection_head(_mean_of_layers_1_2_last(out)), dim=-1)


@architecture("medclip-resnet50")
class MedCLIPResNet(_MedCLIP):
    """MedCLIP-ResNet: torchvision ResNet-50 whose ``fc`` is the bias-free 512-d projection."""

    @classmethod
    def build(cls, spec, folder, extras):
        vision = nn.Module()
        vision.model = _resnet50(nn.Linear(2048, 512, bias=False))
        return cls(vision, _extra(extras, spec))

    def encode_image(self, pixels):
        return F.normalize(self.vision_model.model(pixels), dim=-1)


@architecture("medclip-swin-tiny")
class MedCLIPSwin(_MedCLIP):
    """MedCLIP-ViT: Swin-T ``pooler_output`` through a bias-free 768 -> 512 projection."""

    @classmethod
    def build(cls, spec, folder, extras):
        from transformers import SwinConfig, SwinModel

        vision = nn.Module()
        vision.model = SwinModel(SwinConfig.from_pretrained(_extra(extras, spec, 1)))
        vision.projection_head = nn.Linear(768, 512, bias=False)
        return cls(vision, _extra(extras, spec))

    @classmethod
    def release_state(cls, folder: Path) -> dict[str, Any]:
        # The release was saved by transformers 4.x; transformers' own renaming table maps its
        # Swin keys (attention.self.query, intermediate.dense, ...) to today's names.
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
        from transformers.core_model_loading import apply_renamings

        renamings = get_checkpoint_conversion_mapping("swin")
        state = super().release_state(folder)
        prefix = "vision_model.model."
        return {
            (
                prefix + apply_renamings(k[len(prefix) :], renamings) if k.startswith(prefix) else k
            ): v
            for k, v in state.items()
        }

    def encode_image(self, pixels):
        pooled = self.vision_model.model(pixel_values=pixels).pooler_output
        return F.normalize(self.vision_model.projection_head(pooled), dim=-1)


@architecture("keep-vit-l16")
class Keep(Architecture):
    """KEEP: timm ViT-L/16 (LayerScale 1e-5, dynamic size) + GELU MLP head, BERT text."""

    def __init__(self, vision_args: dict[str, Any], text_config: dict[str, Any], dim: int) -> None:
        import timm
        from transformers import BertConfig, BertModel

        super().__init__()
        self.visual = timm.create_model(
            "vit_large_patch16_224",
            pretrained=False,
            img_size=224,
            patch_size=16,
            init_values=1e-5,
            num_classes=0,
            dynamic_img_size=True,
            **vision_args,
        )
        self.visual_head = nn.Sequential(
            nn.Linear(self.visual.num_features, dim), nn.GELU(), nn.Linear(dim, dim)
        )
        self.text = BertModel(BertConfig(**text_config))
        self.logit_scale = nn.Parameter(torch.zeros(()))

    @classmethod
    def build(cls, spec, folder, extras):
        config = json.loads((folder / "config.json").read_text())
        return cls(
            spec.options.get("vision_args", {}),
            config["text_config"],
            config.get("projection_dim", 768),
        )

    @staticmethod
    def tokenizer_folder(spec, folder, extras):
        return folder  # the KEEP repository ships its tokenizer

    def encode_image(self, pixels):
        return F.normalize(self.visual_head(self.visual(pixels)), dim=-1)

    def encode_text(self, input_ids, attention_mask):
        out = self.text(input_ids=input_ids, attention_mask=attention_mask)
        return F.normalize(out.pooler_output, dim=-1)
