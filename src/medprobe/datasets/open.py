"""Open a dataset from a path, whatever its shape (folder, manifest, npz)."""

from __future__ import annotations

from pathlib import Path

from medprobe.datasets.base import Dataset
from medprobe.datasets.files import image_folder, manifest
from medprobe.datasets.medmnist import medmnist
from medprobe.errors import MedprobeError


def open_dataset(path: str | Path, *, modality: str | None = None, **options) -> Dataset:
    """A folder of class folders, a ``.csv``/``.parquet`` manifest, or a MedMNIST ``.npz``."""
    path = Path(path).expanduser()
    if path.is_dir():
        return image_folder(path, modality=modality or "unknown", **options)
    suffix = path.suffix.lower()
    if suffix in {".csv", ".parquet", ".pq"}:
        return manifest(path, modality=modality, **options)
    if suffix == ".npz":
        return medmnist(path, modality=modality, **options)
    if not path.exists():
        raise MedprobeError(f"dataset path {path} does not exist")
    raise MedprobeError(
        f"cannot tell what kind of dataset {path} is: give a folder of class folders, "
        "a .csv/.parquet manifest or a MedMNIST .npz"
    )
