"""Read the preprocessing a checkpoint folder ships with (open_clip, transformers, timm configs).

Used twice: a zoo spec is checked against the folder it loads from (a wrong mean/std would
silently corrupt every result, so a mismatch is an error), and a ``local:`` folder gets its
spec from these files.
"""

from __future__ import annotations

import json
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


def _square(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return value.get("shortest_edge") or value.get("height")
    if isinstance(value, list | tuple):
        return int(value[-1])
    return None


def shipped_preprocessing(folder: Path) -> Preprocessing | None:
    """The preprocessing declared by the config files in ``folder`` (None if it declares none)."""
    if not folder.is_dir():
        return None
    if (folder / "open_clip_config.json").is_file():
        config = _json(folder / "open_clip_config.json")
        pre = config.get("preprocess_cfg", {})
        size = _square(config["model_cfg"]["vision_cfg"].get("image_size", 224))
        return Preprocessing(
            image_size=size,
            resize_mode=_OPEN_CLIP_RESIZE.get(
                pre.get("resize_mode", "shortest"), "resize_center_crop"
            ),
            interpolation=pre.get("interpolation", "bicubic"),
            mean=tuple(pre.get("mean", OPENAI_MEAN)),
            std=tuple(pre.get("std", OPENAI_STD)),
        )
    if (folder / "preprocessor_config.json").is_file():
        pre = _json(folder / "preprocessor_config.json")
        crop = _square(pre.get("crop_size")) if pre.get("do_center_crop") else None
        resize = _square(pre.get("size"))
        squash = isinstance(pre.get("size"), dict) and "height" in pre["size"] and not crop
        return Preprocessing(
            image_size=crop or resize,
            resize_size=resize if crop and resize != crop else None,
            resize_mode="squash" if squash else "resize_center_crop",
            interpolation=_PIL_RESAMPLE.get(pre.get("resample", 3), "bicubic"),
            mean=tuple(pre.get("image_mean", OPENAI_MEAN)),
            std=tuple(pre.get("image_std", OPENAI_STD)),
        )
    if (folder / "config.json").is_file():
        config = _json(folder / "config.json")
        pre = config.get("pretrained_cfg")
        if pre and "mean" in pre:  # timm
            size = _square(pre.get("input_size", [3, 224, 224]))
            crop_pct = pre.get("crop_pct", 1.0) or 1.0
            resize = round(size / crop_pct)
            return Preprocessing(
                image_size=size,
                resize_size=resize if resize != size else None,
                resize_mode="squash" if pre.get("crop_mode") == "squash" else "resize_center_crop",
                interpolation=pre.get("interpolation", "bicubic"),
                mean=tuple(pre["mean"]),
                std=tuple(pre["std"]),
            )
    return None


def check_preprocessing(spec: EncoderSpec, folder: Path) -> None:
    """Refuse to run when the spec's size or mean/std disagrees with what the checkpoint ships."""
    shipped = shipped_preprocessing(folder)
    if shipped is None:
        return
    mine = spec.preprocessing
    problems = []
    if shipped.image_size != mine.image_size:
        problems.append(f"image size {mine.image_size} vs {shipped.image_size}")
    for field in ("mean", "std"):
        a, b = getattr(mine, field), getattr(shipped, field)
        if len(a) != len(b) or max(abs(x - y) for x, y in zip(a, b, strict=False)) > 1e-3:
            problems.append(f"{field} {a} vs {b}")
    if problems:
        raise MedprobeError(
            f"{spec.name}: the spec's preprocessing disagrees with the checkpoint in {folder} "
            f"({'; '.join(problems)}); fix the spec or load it as local:{folder}"
        )
