"""``library == "conch"``: CONCH through the Mahmood lab's own CoCa code (``conch`` package).

The architecture is ``conch.open_clip_custom``'s ``CoCa`` built from its bundled
``conch_ViT-B-16`` config; the hub's ``pytorch_model.bin`` is read with ``weights_only=True``
(CONCH's own loader calls a bare ``torch.load``) and loaded strictly except for the caption
decoder (``text_decoder.*``), whose weights the release removed on purpose.
"""

from __future__ import annotations

import json
from importlib import resources

import torch

from medprobe.encoders.base import TorchEncoder
from medprobe.encoders.loading import checked_load, read_state_dict, weights_digest, weights_folder
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec
from medprobe.errors import MedprobeError


def _conch():
    try:
        from conch.open_clip_custom import coca_model, custom_tokenizer
    except ImportError:
        raise MedprobeError("CONCH needs its own package: pip install 'medprobe[zoo]'") from None
    return coca_model, custom_tokenizer


class ConchEncoder(TorchEncoder):
    """The contrastive image embedding (``encode_image(proj_contrast=True, normalize=False)``)."""

    def __init__(self, spec, module, options: BuildOptions, weights: WeightsRef) -> None:
        super().__init__(spec, module, options, weights)
        self._tokenizer = None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(batch, proj_contrast=True, normalize=False)

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        _, custom_tokenizer = _conch()
        if self._tokenizer is None:
            self._tokenizer = custom_tokenizer.get_tokenizer()
        # conch's own tokenize(), which calls batch_encode_plus (gone in transformers 5): 127
        # tokens padded to max length, then one <pad> placeholder for the <cls> token.
        tokens = self._tokenizer(
            texts,
            max_length=127,
            add_special_tokens=True,
            return_token_type_ids=False,
            truncation=True,
            padding="max_length",
            return_tensors="pt",
        )["input_ids"]
        tokens = torch.nn.functional.pad(tokens, (0, 1), value=self._tokenizer.pad_token_id)
        return self.module.encode_text(tokens.to(self.device), normalize=False)


def conch_config(spec: EncoderSpec) -> dict:
    """The CoCa config: the package's bundled file named by the spec (or a dict in options)."""
    config = spec.options.get("model_cfg", spec.architecture)
    if isinstance(config, str):
        _conch()
        path = resources.files("conch.open_clip_custom").joinpath(f"model_configs/{config}.json")
        config = json.loads(path.read_text())
    return {k: v for k, v in config.items() if k != "custom_text"}


def load_conch(spec: EncoderSpec, options: BuildOptions) -> ConchEncoder:
    """Loader for ``library == "conch"`` specs."""
    coca_model, _ = _conch()
    folder, source = weights_folder(spec, options.weights)
    file = folder / "pytorch_model.bin" if folder.is_dir() else folder
    module = checked_load(spec, file, lambda: coca_model.CoCa(**conch_config(spec)))
    state = checked_load(spec, file, lambda: read_state_dict(file))
    own = module.state_dict()
    missing = sorted(k for k in set(own) - set(state) if not k.startswith("text_decoder."))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise MedprobeError(
            f"{spec.name}: the weights in {file} do not fit CONCH's CoCa ({len(missing)} missing,"
            f" e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]})"
        )
    checked_load(spec, file, lambda: module.load_state_dict(state, strict=False))
    return ConchEncoder(spec, module, options, WeightsRef(source, weights_digest(file)))
