"""Records and datasets: what the extractor iterates over."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    """One labelled image: where it comes from, its class index and its split."""

    id: str
    label: int
    split: str
    source: str | int
    meta: Mapping[str, Any] = field(default_factory=dict)


class Dataset(ABC):
    """A labelled image collection with a modality and zero-shot prompt templates.

    Subclasses supply :meth:`load_image` (RGB PIL image for a record, or
    :class:`~medprobe.errors.BadImageError`) and :meth:`fingerprint` (changes whenever any image
    or label changes).
    """

    def __init__(
        self,
        name: str,
        modality: str,
        class_names: Sequence[str],
        records: Sequence[Record],
        prompts: Sequence[str] = ("a photo of {}.",),
    ) -> None:
        self.name = name
        self.modality = modality
        self.class_names = list(class_names)
        self.records = list(records)
        self.prompts = list(prompts)

    @abstractmethod
    def load_image(self, record: Record) -> Image.Image:
        """The record's image as an RGB PIL image."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable hash of the dataset's content (images, labels, splits)."""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Images per class name, optionally within one split (classes with 0 included)."""
        counts = Counter(r.label for r in self.records if split is None or r.split == split)
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, "
            f"n={len(self)}, classes={self.class_names})"
        )
