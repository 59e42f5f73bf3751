"""medprobe: what do the image features of medical and general VLMs capture on lesion data?

The public API is imported lazily, so ``medprobe --help`` does not pay for torch and friends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medprobe._version import __version__

_EXPORTS = {
    "datasets": "medprobe.datasets",
    "Embedding2D": "medprobe.analysis",
    "KNNProbe": "medprobe.analysis",
    "LinearProbe": "medprobe.analysis",
    "Separability": "medprobe.analysis",
    "create_encoder": "medprobe.encoders",
    "get_spec": "medprobe.encoders",
    "list_specs": "medprobe.encoders",
    "MedprobeError": "medprobe.errors",
    "FeatureSet": "medprobe.features",
    "extract": "medprobe.features",
}

__all__ = [  # noqa: RUF022 - grouped as in _EXPORTS
    "__version__",
    "datasets",
    "Embedding2D",
    "KNNProbe",
    "LinearProbe",
    "Separability",
    "create_encoder",
    "get_spec",
    "list_specs",
    "MedprobeError",
    "FeatureSet",
    "extract",
]

if TYPE_CHECKING:
    from medprobe import datasets
    from medprobe.analysis import Embedding2D, KNNProbe, LinearProbe, Separability
    from medprobe.encoders import create_encoder, get_spec, list_specs
    from medprobe.errors import MedprobeError
    from medprobe.features import FeatureSet, extract


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medprobe' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if name == "datasets" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
