"""Datasets: labelled images with a modality, class names and zero-shot prompts.

Imported lazily (PEP 562): records and the base class are light; the sources pull in pandas,
pydicom, webdataset and Hugging Face ``datasets`` only when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Dataset": "medprobe.datasets.base",
    "Record": "medprobe.datasets.base",
    "SkippedRecord": "medprobe.datasets.base",
    "FileDataset": "medprobe.datasets.files",
    "image_folder": "medprobe.datasets.files",
    "manifest": "medprobe.datasets.files",
    "MedMNISTDataset": "medprobe.datasets.medmnist",
    "medmnist": "medprobe.datasets.medmnist",
    "hf_dataset": "medprobe.datasets.hf",
    "webdataset": "medprobe.datasets.shards",
    "open_dataset": "medprobe.datasets.sources",
    "open_source": "medprobe.datasets.sources",
    "source_names": "medprobe.datasets.sources",
    "prompts_for": "medprobe.datasets.prompts",
    "assign_splits": "medprobe.datasets.splits",
    "SyntheticConfig": "medprobe.datasets.synthetic",
    "TextNuisance": "medprobe.datasets.synthetic",
    "synthetic": "medprobe.datasets.synthetic",
}
__all__ = [
    "Dataset",
    "FileDataset",
    "MedMNISTDataset",
    "Record",
    "SkippedRecord",
    "SyntheticConfig",
    "TextNuisance",
    "assign_splits",
    "hf_dataset",
    "image_folder",
    "manifest",
    "medmnist",
    "open_dataset",
    "open_source",
    "prompts_for",
    "source_names",
    "synthetic",
    "webdataset",
]

if TYPE_CHECKING:
    from medprobe.datasets.base import Dataset, Record, SkippedRecord
    from medprobe.datasets.files import FileDataset, image_folder, manifest
    from medprobe.datasets.hf import hf_dataset
    from medprobe.datasets.medmnist import MedMNISTDataset, medmnist
    from medprobe.datasets.prompts import prompts_for
    from medprobe.datasets.shards import webdataset
    from medprobe.datasets.sources import open_dataset, open_source, source_names
    from medprobe.datasets.splits import assign_splits
    from medprobe.datasets.synthetic import SyntheticConfig, TextNuisance, synthetic


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medprobe.datasets' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
