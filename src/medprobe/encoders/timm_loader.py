"""timm-backed encoders (vision-only models, and randomly initialised real architectures)."""

from __future__ import annotations

import re

import timm
import torch

from medprobe.encoders.base import Encoder, TorchEncoder
from medprobe.encoders.loading import checked_load, weights_digest, weights_folder
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec

_TRANSFORMER = re.compile(r"^(vit|deit|beit|eva|swin)")


class TimmEncoder(TorchEncoder):
    """A timm model; ``projected`` uses its head as the projection, otherwise pre-logits."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if self.spec.embedding == "projected":
            return self.module(batch)
        return self.module.forward_head(self.module.forward_features(batch), pre_logits=True)


def build_timm_module(spec: EncoderSpec) -> torch.nn.Module:
    """The architecture named by ``spec``; random weights drawn from ``options['seed']``.

    The seed makes a "random features" control reproducible; the global torch RNG is left alone.
    """
    head = spec.embed_dim if spec.embedding == "projected" else 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(spec.options.get("seed", 0)))
        return timm.create_model(
            spec.architecture,
            pretrained=False,
            num_classes=head,
            # Transformers take their input size as an argument; CNNs are size-agnostic.
            **(
                {"img_size": spec.preprocessing.image_size}
                if _TRANSFORMER.match(spec.architecture)
                else {}
            ),
            **spec.options.get("model_args", {}),
        )


def load_timm(spec: EncoderSpec, options: BuildOptions) -> Encoder:
    """Loader for ``library == "timm"`` specs: random (seeded) or from hub / local weights."""
    if spec.options.get("random_init") and options.weights is None:
        return TimmEncoder(spec, build_timm_module(spec), options)
    folder, source = weights_folder(spec, options.weights)

    def build() -> torch.nn.Module:
        if folder.is_dir() and (folder / "config.json").is_file():
            name, extra = f"local-dir:{folder}", {}
        else:  # a bare checkpoint for the spec's architecture
            name, extra = spec.architecture, {"pretrained_cfg_overlay": {"file": str(folder)}}
        return timm.create_model(
            name, pretrained=True, num_classes=0, **extra, **spec.options.get("model_args", {})
        )

    module = checked_load(spec, folder, build)
    return TimmEncoder(spec, module, options, WeightsRef(source, weights_digest(folder)))
