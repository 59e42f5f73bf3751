"""Run a text detector over a dataset: every image's words and marks, cached by content."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from medprobe.atomic import atomic_write
from medprobe.audit.boxes import TextBox
from medprobe.audit.detector import TextDetector
from medprobe.audit.registry import create_detector
from medprobe.datasets.base import Dataset
from medprobe.errors import BadImageError
from medprobe.fingerprint import fingerprint
from medprobe.progress import progress_bar

FORMAT_VERSION = 4


@dataclass
class TextDetections:
    """The words and marks found in every image of one dataset (aligned with ``ids``)."""

    dataset: str
    class_names: list[str]
    ids: list[str]
    labels: np.ndarray
    boxes: list[list[TextBox]]
    sizes: list[tuple[int, int]]
    detector: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def _any(self, kind: str) -> np.ndarray:
        return np.array([any(b.kind == kind for b in boxes) for boxes in self.boxes], bool)

    @property
    def has_text(self) -> np.ndarray:
        """Images with at least one word."""
        return self._any("word")

    @property
    def has_marks(self) -> np.ndarray:
        """Images with at least one non-word mark."""
        return self._any("mark")

    def counts(self, kind: str) -> np.ndarray:
        """Boxes of ``kind`` ("word" or "mark") in each image."""
        return np.array([sum(b.kind == kind for b in boxes) for boxes in self.boxes], int)

    def boxes_of(self, image_id: str) -> list[TextBox]:
        """The words and marks of one image ([] for an image without any or not detected)."""
        k = self._positions.get(image_id)
        return self.boxes[k] if k is not None else []

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {image_id: k for k, image_id in enumerate(self.ids)}

    @property
    def detector_label(self) -> str:
        """``name version`` of the detector, for tables (the encoder revision of audit rows)."""
        name = self.detector.get("detector", "")
        return f"{name} {self.detector.get(name, '')}".strip()

    def digest(self) -> str:
        """Changes whenever any box changes (part of the masked features' cache key)."""
        return fingerprint("text-detections", self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "dataset": self.dataset,
            "class_names": self.class_names,
            "ids": self.ids,
            "labels": self.labels.tolist(),
            "boxes": [[b.to_json() for b in image] for image in self.boxes],
            "sizes": [list(s) for s in self.sizes],
            "detector": self.detector,
            "skipped": self.skipped,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextDetections:
        return cls(
            data["dataset"],
            data["class_names"],
            data["ids"],
            np.asarray(data["labels"], dtype=int),
            [[TextBox.from_json(b) for b in image] for image in data["boxes"]],
            [tuple(s) for s in data["sizes"]],
            data["detector"],
            data["skipped"],
        )


def _cache_file(cache: Any, key: str) -> Path | None:
    if cache is None:
        return None
    # a folder, or a FeatureStore (its .root; a Path's own .root is "/")
    root = Path(cache if isinstance(cache, str | os.PathLike) else cache.root).expanduser()
    return root / "text-audit" / f"{key}.json"


def read_cached(cache: Any, key: str) -> dict[str, Any] | None:
    """The text audit's JSON entry of ``key`` in ``cache`` (a folder or a
    :class:`~medprobe.features.FeatureStore`), served only if it parses and was written for
    this key; else None (no cache, no entry, or a damaged or foreign one: computed again)."""
    path = _cache_file(cache, key)
    if path is None or not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return None
    return state if isinstance(state, dict) and state.get("key") == key else None


def write_cached(cache: Any, key: str, state: dict[str, Any]) -> None:
    """Store ``state`` as the entry of ``key`` (atomically, with the key inside, so
    :func:`read_cached` can tell it is whole and this key's)."""
    path = _cache_file(cache, key)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"key": key, **state}).encode()
    atomic_write(path, lambda h: h.write(data))


def detect_text(
    dataset: Dataset,
    detector: TextDetector | None = None,
    *,
    cache: Any = None,
    workers: int | None = None,
    show_progress: bool = False,
) -> TextDetections:
    """Run ``detector`` (default: :func:`~medprobe.audit.registry.create_detector`'s) on every
    image of ``dataset`` in parallel, cached by content.

    ``cache`` is a folder or a :class:`~medprobe.features.FeatureStore`; the key is the
    dataset's fingerprint and the detector's :meth:`~TextDetector.describe` (name, versions of
    code and weights, settings). Unreadable images are listed in ``skipped`` with their reason.
    """
    detector = detector or create_detector()
    settings = detector.describe()  # fails now, in one sentence, if the detector is missing
    key = fingerprint("text-detections", FORMAT_VERSION, dataset.fingerprint(), settings)
    cached = read_cached(cache, key)
    if cached is not None:
        found = TextDetections.from_json(cached)
        # the key is the content; the same images under another name are the same detections
        found.dataset = dataset.name
        return found

    def one(index: int) -> tuple[list[TextBox], tuple[int, int], str]:
        record = dataset.records[index]
        try:
            image = dataset.load_image(record)
        except BadImageError as exc:
            return [], (0, 0), str(exc)
        return detector.detect(image), image.size, ""

    workers = workers or max(1, os.cpu_count() or 1)
    with progress_bar(disable=not show_progress) as bar:
        task = bar.add_task(f"reading text in {dataset.name}", total=len(dataset))
        with ThreadPoolExecutor(workers) as pool:
            found = []
            for item in pool.map(one, range(len(dataset))):
                found.append(item)
                bar.advance(task)
    kept = [k for k, (_, _, why) in enumerate(found) if not why]
    result = TextDetections(
        dataset=dataset.name,
        class_names=list(dataset.class_names),
        ids=[dataset.records[k].id for k in kept],
        labels=np.array([dataset.records[k].label for k in kept], dtype=int),
        boxes=[found[k][0] for k in kept],
        sizes=[found[k][1] for k in kept],
        detector=settings,
        skipped=[
            {"id": dataset.records[k].id, "reason": why}
            for k, (_, _, why) in enumerate(found)
            if why
        ],
    )
    write_cached(cache, key, result.to_json())
    return result
