"""Feature extraction and the FeatureSet container.

Imported lazily (PEP 562): the store and the FeatureSet are light, extraction pulls in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ExtractJob": "medprobe.features.extraction",
    "extract": "medprobe.features.extraction",
    "FeatureSet": "medprobe.features.featureset",
    "SkippedRecord": "medprobe.datasets.base",
    "FeatureStore": "medprobe.features.store",
}
__all__ = ["ExtractJob", "FeatureSet", "FeatureStore", "SkippedRecord", "extract"]

if TYPE_CHECKING:
    from medprobe.datasets.base import SkippedRecord
    from medprobe.features.extraction import ExtractJob, extract
    from medprobe.features.featureset import FeatureSet
    from medprobe.features.store import FeatureStore


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medprobe.features' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
