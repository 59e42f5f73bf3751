"""``library == "custom"``: releases with their own model code (see ``architectures``).

The weights come from the hub (or a local folder) like every other encoder; the architecture is
built from the release's config (and the configs of its extra repositories), then the released
state dict is loaded into it with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medprobe.encoders.architectures import Architecture, get_architecture
from medprobe.encoders.base import TorchEncoder
from medprobe.encoders.loading import (
    checked_load,
    extra_folders,
    load_exact,
    weights_digest,
    weights_folder,
)
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec
from medprobe.encoders.transformers_loader import hf_tokenizer, hf_tokens


class CustomEncoder(TorchEncoder):
    """An :class:`Architecture`: ``encode_image`` for images, ``encode_text`` after the
    release's tokenizer (padding and context length from the spec's text side)."""

    def __init__(
        self,
        spec: EncoderSpec,
        module: Architecture,
        tokenizer_folder: Path,
        options: BuildOptions,
        weights: WeightsRef,
    ) -> None:
        super().__init__(spec, module, options, weights)
        self.tokenizer_folder = tokenizer_folder
        self._tokenizer = None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(batch)

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            self._tokenizer = hf_tokenizer(self.tokenizer_folder)
        tokens = hf_tokens(self._tokenizer, self.spec, texts, self.device)
        return self.module.encode_text(tokens["input_ids"], tokens["attention_mask"])


def load_custom(spec: EncoderSpec, options: BuildOptions) -> CustomEncoder:
    """Loader for ``library == "custom"`` specs (strict loading, ``weights_only`` pickles)."""
    kind = get_architecture(spec.architecture)
    folder, source = weights_folder(spec, options.weights)
    extras = extra_folders(spec)
    model_folder = folder if folder.is_dir() else folder.parent
    module = checked_load(spec, folder, lambda: kind.build(spec, model_folder, extras))
    state = checked_load(spec, folder, lambda: kind.release_state(folder))
    load_exact(spec, module, state, folder)
    return CustomEncoder(
        spec,
        module,
        kind.tokenizer_folder(spec, model_folder, extras),
        options,
        WeightsRef(source, weights_digest(folder)),
    )
