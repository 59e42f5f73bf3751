"""What is in a dataset: classes per split, image sizes and modes, and the problems found."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from medprobe.datasets.base import SPLITS, Dataset
from medprobe.datasets.files import FileDataset
from medprobe.datasets.io import is_dicom
from medprobe.errors import BadImageError
from medprobe.progress import progress_bar


@dataclass
class Inspection:
    """The findings of :func:`inspect_dataset`."""

    name: str
    modality: str
    counts: dict[str, dict[str, int]]  # split -> class -> images
    listing: str = ""  # what listed the images (class folders, a manifest)
    unit: str = "image"  # the unit intervals resample (a group column, or image)
    sizes: Counter = field(default_factory=Counter)  # (width, height) -> images
    modes: Counter = field(default_factory=Counter)  # original PIL mode (or "DICOM")
    problems: list[tuple[str, str]] = field(default_factory=list)  # (image id or "-", reason)

    def to_json(self) -> dict:
        """The findings as plain JSON (``medprobe data inspect --json``)."""
        return {
            "name": self.name,
            "modality": self.modality,
            "listing": self.listing,
            "unit": self.unit,
            "counts": self.counts,
            "sizes": [{"width": w, "height": h, "images": n} for (w, h), n in self.sizes.items()],
            "modes": dict(self.modes),
            "problems": [{"id": i, "reason": r} for i, r in self.problems],
        }


def _original_mode(path: Path) -> str:
    if is_dicom(path):
        return "DICOM"
    try:
        with Image.open(path) as image:
            return image.mode
    except Exception:
        return "?"


def inspect_dataset(dataset: Dataset, *, show_progress: bool = True) -> Inspection:
    """Decode every image once and summarise (the same decoding an extraction would do)."""
    counts = {
        split: dataset.class_counts(split)
        for split in SPLITS
        if any(r.split == split for r in dataset)
    }
    found = Inspection(
        dataset.name,
        dataset.modality,
        counts,
        listing=getattr(dataset, "listing", type(dataset).__name__),
        unit=dataset.unit,
    )
    found.problems += [("-", p) for p in getattr(dataset, "problems", [])]
    found.problems += [(r.id, r.reason) for r in dataset.rejected]
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task(f"inspecting {dataset.name}", total=len(dataset))
        for record in dataset:
            if isinstance(dataset, FileDataset):
                found.modes[_original_mode(Path(str(record.source)))] += 1
            try:
                image = dataset.load_image(record)
            except BadImageError as exc:
                found.problems.append((record.id, str(exc)))
            else:
                found.sizes[image.size] += 1
                if not isinstance(dataset, FileDataset):
                    found.modes[image.mode] += 1
            bar.advance(task)
    return found
