"""``library == "hi-ml-multimodal"``: BioViL and BioViL-T through Microsoft's own package.

The image model is hi-ml's ``ImageModel`` (ResNet-50, or ResNet-50 + ViT pooler for BioViL-T,
with the 128-d MLP projector); the released ``.pt`` is checked against the MD5 that hi-ml pins
and loaded with ``weights_only=True`` and ``strict=True`` (hi-ml itself calls a bare
``torch.load``). The text side is hi-ml's ``CXRBertModel`` class loaded from the same hub
folder, so CXR-BERT needs no remote code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from medprobe.encoders.base import TorchEncoder
from medprobe.encoders.loading import (
    checked_load,
    load_exact,
    read_state_dict,
    weights_digest,
    weights_folder,
)
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec
from medprobe.encoders.transformers_loader import hf_tokens
from medprobe.errors import MedprobeError


def _hi_ml():
    try:
        from health_multimodal.image.model.model import ImageModel
        from health_multimodal.text.model import CXRBertModel, CXRBertTokenizer
    except ImportError:
        raise MedprobeError(
            "BioViL needs Microsoft's hi-ml-multimodal package: pip install 'medprobe[zoo]'"
        ) from None
    return ImageModel, CXRBertModel, CXRBertTokenizer


class BioVilEncoder(TorchEncoder):
    """``projected_global_embedding`` (128-d joint space) of hi-ml's ``ImageModel``."""

    def __init__(
        self,
        spec: EncoderSpec,
        module: torch.nn.Module,
        folder: Path,
        options: BuildOptions,
        weights: WeightsRef,
    ) -> None:
        super().__init__(spec, module, options, weights)
        self.folder = folder
        self._text = None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module(batch).projected_global_embedding

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        _, CXRBertModel, CXRBertTokenizer = _hi_ml()
        if self._text is None:  # loaded on the first text analysis only
            model = CXRBertModel.from_pretrained(self.folder, dtype=torch.float32)
            model = model.eval().to(self.device, dtype=self.dtype)
            self._text = CXRBertTokenizer.from_pretrained(self.folder), model
        tokenizer, model = self._text
        tokens = hf_tokens(tokenizer, self.spec, texts, self.device)
        return model.get_projected_text_embeddings(
            tokens["input_ids"], tokens["attention_mask"], normalize_embeddings=True
        )


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def load_hi_ml(spec: EncoderSpec, options: BuildOptions) -> BioVilEncoder:
    """Loader for ``library == "hi-ml-multimodal"`` specs (``architecture`` is hi-ml's
    ``ImageEncoderType``: ``resnet50`` or ``resnet50_multi_image``)."""
    ImageModel, _, _ = _hi_ml()
    image_file = spec.options["image_weights"]
    folder, source = weights_folder(spec, options.weights)
    file = folder / image_file if folder.is_dir() else folder
    expected = spec.options.get("md5")
    if expected and file.is_file() and _md5(file) != expected:
        raise MedprobeError(
            f"{spec.name}: {file} is not the released file (MD5 differs from hi-ml's "
            f"{expected}); download it again"
        )
    module = checked_load(
        spec,
        file,
        lambda: ImageModel(img_encoder_type=spec.architecture, joint_feature_size=spec.embed_dim),
    )
    load_exact(spec, module, checked_load(spec, file, lambda: read_state_dict(file)), file)
    return BioVilEncoder(
        spec,
        module,
        folder if folder.is_dir() else folder.parent,
        options,
        WeightsRef(source, weights_digest(file)),
    )
