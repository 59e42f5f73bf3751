"""Read the preprocessing a checkpoint folder ships with (open_clip, transformers, timm configs).

Used twice: a zoo spec is checked against the folder it loads from (a wrong mean/std would
silently corrupt every result, so a mismatch is an error), and a ``local:`` folder gets its
spec from these files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from medprobe.encoders.spec import OPENAI_MEAN, OPENAI_STD, EncoderSpec, Preprocessing
from medprobe.errors import MedprobeError

_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_OPEN_CLIP_RESIZE = {"shortest": "resize_center_crop", "squash": "squash", "longest": "pad"}


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MedprobeError(f"cannot read {path}: {exc}") from None


def _open_clip(folder: Path) -> Preprocessing:
    """open_clip's own resolution: ``preprocess_cfg`` over open_clip's ``PreprocessCfg``
    defaults, the size being the vision tower's image size."""
    from open_clip.transform import PreprocessCfg

    config = _json(folder / "open_clip_config.json")
    size = config["model_cfg"]["vision_cfg"].get("image_size", 224)
    known = PreprocessCfg.__dataclass_fields__
    cfg = PreprocessCfg(
        **{k: v for k, v in config.get("preprocess_cfg", {}).items() if k in known},
    )
    return Preprocessing(
        image_size=size if isinstance(size, int) else int(size[-1]),
        resize_mode=_OPEN_CLIP_RESIZE[cfg.resize_mode],
        interpolation=cfg.interpolation,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
    )


def _edge(size: Any, key: str) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, dict):
        value = size.get(key)
        if value is None and key == "shortest_edge":
            return None
        return value
    return None


def _hf(folder: Path) -> Preprocessing:
    """HF's own resolution: the attributes of ``AutoImageProcessor.from_pretrained(folder)``
    (class defaults included), turned into the equivalent geometry and mean/std. Rescaling and
    normalisation switched off (``do_rescale`` / ``do_normalize: false``) or another rescale
    factor are folded into mean/std: the model sees ``(x * factor - mean) / std``."""
    from transformers import AutoImageProcessor

    try:
        p = AutoImageProcessor.from_pretrained(folder).to_dict()
    except (OSError, ValueError, KeyError):
        p = _json(folder / "preprocessor_config.json")
    size, crop = p.get("size"), p.get("crop_size")
    cropped = bool(p.get("do_center_crop")) and crop is not None
    crop_edge = _edge(crop, "height") if cropped else None
    if not p.get("do_resize", True):
        raise MedprobeError(f"{folder}: images that are not resized cannot be batched")
    if (shortest := _edge(size, "shortest_edge")) is not None:
        if crop_edge is None:
            raise MedprobeError(f"{folder}: shortest-edge resize without a crop is not square")
        mode, resize, final = "resize_center_crop", shortest, crop_edge
    else:
        height, width = _edge(size, "height"), _edge(size, "width")
        if height is None or height != width:
            raise MedprobeError(f"{folder}: only square image sizes are supported, got {size}")
        mode, resize, final = "squash", height, crop_edge or height
    resample = p.get("resample", 3)
    factor = p.get("rescale_factor", 1 / 255) if p.get("do_rescale", True) else 1.0
    mean, std = p.get("image_mean", OPENAI_MEAN), p.get("image_std", OPENAI_STD)
    if not p.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    scale = 255 * factor
    return Preprocessing(
        image_size=final,
        resize_size=resize if resize != final else None,
        resize_mode=mode,
        interpolation=_PIL_RESAMPLE.get(int(resample), "bicubic"),
        mean=tuple(m / scale for m in mean),
        std=tuple(v / scale for v in std),
        backend="transformers",
    )


def _timm(pretrained_cfg: dict[str, Any]) -> Preprocessing:
    """timm's own resolution (``resolve_data_config``) and eval transform geometry: resize to
    ``floor(size / crop_pct)`` (centre crop or squash), then crop to the input size."""
    from timm.data import resolve_data_config
    from timm.data.transforms_factory import DEFAULT_CROP_PCT

    cfg = resolve_data_config(pretrained_cfg=pretrained_cfg)
    size = int(cfg["input_size"][-1])
    crop_mode = cfg.get("crop_mode") or "center"
    if crop_mode not in ("center", "squash"):
        raise MedprobeError(f"timm crop_mode {crop_mode!r} is not supported")
    scale = math.floor(size / (cfg.get("crop_pct") or DEFAULT_CROP_PCT))
    return Preprocessing(
        image_size=size,
        resize_size=scale if scale != size else None,
        resize_mode="squash" if crop_mode == "squash" else "resize_center_crop",
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
    )


def shipped_preprocessing(folder: Path) -> Preprocessing | None:
    """The preprocessing declared by the config files in ``folder`` (None if it declares none),
    resolved by each library's own code (open_clip, transformers, timm)."""
    if not folder.is_dir():
        return None
    if (folder / "open_clip_config.json").is_file():
        return _open_clip(folder)
    if (folder / "preprocessor_config.json").is_file():
        return _hf(folder)
    if (folder / "config.json").is_file():
        pre = _json(folder / "config.json").get("pretrained_cfg")
        if pre and "mean" in pre:  # timm
            return _timm(pre)
    return None


def _disagreements(mine: Preprocessing, shipped: Preprocessing) -> list[str]:
    problems = []
    for field in ("image_size", "resize_mode", "interpolation", "backend"):
        a, b = getattr(mine, field), getattr(shipped, field)
        if a != b:
            problems.append(f"{field} {a} vs {b}")
    if (mine.resize_size or mine.image_size) != (shipped.resize_size or shipped.image_size):
        problems.append(f"resize to {mine.resize_size} vs {shipped.resize_size}")
    for field in ("mean", "std"):
        a, b = getattr(mine, field), getattr(shipped, field)
        if max(abs(x - y) for x, y in zip(a, b, strict=True)) > 1e-3:
            problems.append(f"{field} {a} vs {b}")
    return problems


def check_preprocessing(spec: EncoderSpec, folder: Path) -> None:
    """Refuse to run when any part of the spec's preprocessing (size, resize, crop, resize mode,
    interpolation, mean/std) disagrees with what the checkpoint ships."""
    shipped = shipped_preprocessing(folder)
    if shipped is None:
        return
    problems = _disagreements(spec.preprocessing, shipped)
    if problems:
        raise MedprobeError(
            f"{spec.name}: the spec's preprocessing disagrees with the checkpoint in {folder} "
            f"({'; '.join(problems)}); fix the spec or load it as local:{folder}"
        )
