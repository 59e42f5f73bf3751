"""timm-backed encoders (vision-only models, and randomly initialised real architectures)."""

from __future__ import annotations

import timm
import torch

from medprobe.encoders.base import Encoder, TorchEncoder
from medprobe.encoders.spec import EncoderSpec


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
            img_size=spec.preprocessing.image_size,
            **spec.options.get("model_args", {}),
        )


def load_timm(spec: EncoderSpec, device: str = "cpu") -> Encoder:
    """Loader for ``library == "timm"`` specs."""
    return TimmEncoder(spec, build_timm_module(spec), device=device)
