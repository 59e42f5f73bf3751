"""``library == "custom"``: releases with their own model code (see ``architectures``).

The weights come from the hub (or a local folder) like every other encoder; the architecture is
built from the release's config (and the configs of its extra repositories), then the released
state dict is loaded into it with ``strict=True``.
"""

from __future__ import annotations

import torch

from medprobe.encoders.architectures import get_architecture
from medprobe.encoders.loading import (
    checked_load,
    extra_folders,
    load_exact,
    weights_digest,
    weights_folder,
)
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec
from medprobe.encoders.transformers_loader import HFTokenizedEncoder


class CustomEncoder(HFTokenizedEncoder):
    """An :class:`Architecture`: ``encode_image`` for images, ``encode_text`` after the
    release's tokenizer (padding and context length from the spec's text side)."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(batch)

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokens(texts)
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
