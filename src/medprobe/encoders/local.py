"""``local:/path``: an encoder from a folder, described by the config files inside it."""

from __future__ import annotations

import json
from pathlib import Path

from medprobe.encoders.shipped import shipped_preprocessing
from medprobe.encoders.spec import EncoderSpec, TextSide
from medprobe.errors import MedprobeError

_VISION_ONLY = {"dinov2", "dinov2_with_registers", "vit", "beit", "deit", "convnext", "swin"}
_SIGLIP = {"siglip", "siglip2"}


def _transformers_spec(folder: Path, config: dict, **common) -> EncoderSpec:
    model_type = config.get("model_type", "")
    if model_type in _VISION_ONLY:
        return EncoderSpec(
            library="transformers",
            architecture=model_type,
            embedding="cls",
            embed_dim=config["hidden_size"],
            **common,
        )
    if model_type in _SIGLIP:
        dim = config["vision_config"]["hidden_size"]
        text = TextSide(
            tokenizer="local",
            padding="max_length",
            context_length=config["text_config"].get("max_position_embeddings", 64),
        )
    else:  # CLIP-style, including remote-code models that declare a projection_dim
        dim = config.get("projection_dim")
        if dim is None:
            raise MedprobeError(f"{folder}: cannot tell the embedding size from config.json")
        ctx = config.get("text_config", {}).get("max_position_embeddings", 77)
        text = TextSide(tokenizer="local", context_length=ctx)
    return EncoderSpec(
        library="transformers",
        architecture=model_type or "remote",
        embedding="projected",
        embed_dim=dim,
        text=text,
        trust_remote_code="auto_map" in config,
        **common,
    )


def local_spec(path: str | Path, *, domain: str = "unknown") -> EncoderSpec:
    """A spec for an open_clip, transformers or timm checkpoint folder."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise MedprobeError(
            f"local:{folder} is not a folder; a bare checkpoint file needs an architecture: "
            "create_encoder('<zoo name>', weights='<file>')"
        )
    pre = shipped_preprocessing(folder)
    common = {
        "name": folder.name,
        "domain": domain,
        "subdomain": "local",
        "license": "unknown (local checkpoint)",
        "notes": f"loaded from {folder}",
    }
    if (folder / "open_clip_config.json").is_file():
        config = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
        text_cfg = config.get("text_cfg", {})
        return EncoderSpec(
            library="open_clip",
            architecture="local",
            embedding="projected",
            embed_dim=config["embed_dim"],
            preprocessing=pre,
            text=TextSide(
                tokenizer=text_cfg.get("hf_tokenizer_name", "openai-clip-bpe"),
                context_length=text_cfg.get("context_length", 77),
            ),
            **common,
        )
    if not (folder / "config.json").is_file():
        raise MedprobeError(
            f"local:{folder} has neither open_clip_config.json nor config.json; it is not an "
            "open_clip, transformers or timm checkpoint folder"
        )
    config = json.loads((folder / "config.json").read_text())
    if "architecture" in config:  # timm
        return EncoderSpec(
            library="timm",
            architecture=config["architecture"],
            embedding="pooled",
            embed_dim=config["num_features"],
            preprocessing=pre,
            **common,
        )
    if pre is None:
        raise MedprobeError(
            f"local:{folder} has no preprocessor_config.json to say how to prepare images"
        )
    return _transformers_spec(folder, config, preprocessing=pre, **common)
