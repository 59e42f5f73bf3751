"""Records and datasets: what the extractor iterates over."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from PIL import Image

from medprobe.datasets.vocabulary import ClassTerms, TermsOverride, checked_overrides, class_terms
from medprobe.fingerprint import fingerprint

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Record:
    """One labelled image: where it comes from, its class index, its split, and the group
    (patient, lesion) it belongs to when the dataset names one."""

    id: str
    label: int
    split: str
    source: str | int
    meta: Mapping[str, Any] = field(default_factory=dict)
    group: str | None = None


@dataclass(frozen=True)
class SkippedRecord:
    """An input that produced no features, and why (an unreadable image, a manifest row with
    no label, a file listed twice...)."""

    id: str
    reason: str


class Dataset(ABC):
    """A labelled image collection with a modality and zero-shot prompt templates.

    Subclasses supply :meth:`load_image` (RGB PIL image for a record, or
    :class:`~medprobe.errors.BadImageError`) and :meth:`image_content` (what identifies the
    images: it changes whenever any image changes). ``rejected`` lists inputs left out while
    building the dataset, with reasons; ``group_column`` names the column whose values group
    images (a patient or lesion id): splits keep a group on one side and intervals resample
    groups. ``vocabulary`` overrides or extends the bundled expert / lay names of its classes
    (class name -> ``{expert:, lay:, synonyms:}``; see :mod:`medprobe.datasets.vocabulary`).

    A dataset describes its files as they were when it was opened (fingerprints are computed
    once): open it again to see changed files.
    """

    def __init__(
        self,
        name: str,
        modality: str,
        class_names: Sequence[str],
        records: Sequence[Record],
        prompts: Sequence[str] = ("a photo of {}.",),
        *,
        group_column: str | None = None,
        rejected: Sequence[SkippedRecord] = (),
        vocabulary: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.modality = modality
        self.class_names = list(class_names)
        self.records = list(records)
        self.prompts = list(prompts)
        self.group_column = group_column
        self.rejected = list(rejected)
        self.vocabulary = vocabulary

    @property
    def vocabulary(self) -> dict[str, TermsOverride]:
        """The user's expert / lay names per class (validated: each names a class)."""
        return self._vocabulary

    @vocabulary.setter
    def vocabulary(self, overrides: Mapping[str, Any] | None) -> None:
        self._vocabulary = checked_overrides(self.class_names, overrides)

    def class_terms(self) -> dict[str, ClassTerms]:
        """Every class's expert and lay names and synonyms: the bundled vocabulary of the
        dataset's modality with :attr:`vocabulary` applied."""
        return class_terms(self.modality, self.class_names, self._vocabulary)

    @abstractmethod
    def load_image(self, record: Record, reduce_to: int | None = None) -> Image.Image:
        """The record's image as an RGB PIL image.

        ``reduce_to``: the caller only needs both sides to be at least this many pixels, so a
        source that can decode at a lower scale cheaply (JPEG) may do so; others ignore it.
        """

    @abstractmethod
    def image_content(self) -> Any:
        """JSON-able identity of every image (by record id): equal exactly when the images
        are."""

    @cached_property
    def _image_fingerprint(self) -> str:
        return fingerprint(type(self).__name__, self.image_content())

    def image_fingerprint(self) -> str:
        """A stable hash of the images alone (what features depend on): the feature-store key
        uses it, so renaming a class or a dataset reuses features, a changed image never."""
        return self._image_fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        described = [(r.id, r.label, r.split, r.group) for r in self.records]
        return fingerprint(self.image_fingerprint(), self.class_names, described)

    def fingerprint(self) -> str:
        """A stable hash of the dataset's content: images, labels, splits, groups, classes."""
        return self._fingerprint

    @property
    def unit(self) -> str:
        """The unit that intervals resample: the group column, or ``image``."""
        return self.group_column or "image"

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
