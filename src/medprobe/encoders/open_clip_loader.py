"""open_clip encoders: ``hf-hub:`` repos with ``open_clip_config.json``, built-in architectures
with a checkpoint file (EVA02, ...), or a release's bare checkpoint whose open_clip config the
spec carries (``options['model_cfg']``, e.g. UniMed-CLIP, trained with a fork of open_clip whose
keys ``options['key_map']`` renames to upstream's)."""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch

from medprobe.encoders.base import TorchEncoder
from medprobe.encoders.hub import hub_cache_dir
from medprobe.encoders.loading import (
    checked_load,
    extra_folders,
    load_exact,
    read_state_dict,
    weights_digest,
    weights_folder,
)
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec

_CHECKPOINTS = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "model.safetensors",
    "pytorch_model.bin",
)


class OpenClipEncoder(TorchEncoder):
    """Projected image embedding (``encode_image``) and text embedding (``encode_text``)."""

    def __init__(
        self,
        spec: EncoderSpec,
        module: torch.nn.Module,
        model_name: str,
        options: BuildOptions,
        weights: WeightsRef,
        tokenizer_folder: Path | None = None,
    ) -> None:
        super().__init__(spec, module, options, weights)
        self.model_name = model_name
        self.tokenizer_folder = tokenizer_folder
        self._tokenizer = None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module.encode_image(batch)

    def text_forward(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None and self.tokenizer_folder is not None:
            self._tokenizer = open_clip.tokenizer.HFTokenizer(str(self.tokenizer_folder))
        if self._tokenizer is None:
            self._tokenizer = open_clip.get_tokenizer(
                self.model_name, cache_dir=str(hub_cache_dir())
            )
        tokens = self._tokenizer(texts, context_length=self.spec.text.context_length)
        return self.module.encode_text(tokens.to(self.device))


def _checkpoint(folder: Path) -> Path:
    if folder.is_file():
        return folder
    for name in _CHECKPOINTS:
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    if not found:
        raise FileNotFoundError(f"no checkpoint file in {folder}")
    return found[0]


def _renamed(state: dict, key_map: dict[str, str]) -> dict:
    def rename(key: str) -> str:
        for old, new in key_map.items():
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    return {rename(k): v for k, v in state.items()}


def _load_bare_checkpoint(spec: EncoderSpec, options: BuildOptions) -> OpenClipEncoder:
    """A release's own checkpoint file for the open_clip config in the spec; the HF text tower's
    config (and tokenizer) come from the spec's first extra repository."""
    folder, source = weights_folder(spec, options.weights)
    text_folder = next(iter(extra_folders(spec).values()))
    config = dict(spec.options["model_cfg"])
    config["text_cfg"] = {
        **config["text_cfg"],
        "hf_model_name": str(text_folder),
        "hf_tokenizer_name": str(text_folder),
        "hf_model_pretrained": False,
    }
    file = _checkpoint(folder) if folder.is_file() else folder / spec.options["checkpoint"]
    module = checked_load(spec, file, lambda: open_clip.CustomTextCLIP(**config))
    state = checked_load(spec, file, lambda: read_state_dict(file))
    load_exact(spec, module, _renamed(state, spec.options.get("key_map", {})), file)
    weights = WeightsRef(source, weights_digest(file))
    return OpenClipEncoder(spec, module, spec.name, options, weights, text_folder)


def load_open_clip(spec: EncoderSpec, options: BuildOptions) -> OpenClipEncoder:
    """Loader for ``library == "open_clip"`` specs (always ``weights_only`` / safetensors)."""
    if "model_cfg" in spec.options:
        return _load_bare_checkpoint(spec, options)
    folder, source = weights_folder(spec, options.weights)
    # A folder with open_clip_config.json describes itself; otherwise the spec names a built-in
    # architecture and the folder (or file) holds its checkpoint.
    self_described = folder.is_dir() and (folder / "open_clip_config.json").is_file()
    model_name = f"local-dir:{folder}" if self_described else spec.architecture

    def build() -> torch.nn.Module:
        model, _ = open_clip.create_model_from_pretrained(
            model_name,
            pretrained=None if self_described else str(_checkpoint(folder)),
            weights_only=True,
            cache_dir=str(hub_cache_dir()),
            **spec.options.get("model_args", {}),
        )
        return model

    module = checked_load(spec, folder, build)
    weights = WeightsRef(source, weights_digest(folder))
    return OpenClipEncoder(spec, module, model_name, options, weights)
