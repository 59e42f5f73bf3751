"""Find burned-in text: candidate glyphs by morphology, lines of glyphs, then Tesseract.

Tesseract alone reads documents, not a few words on a radiograph: on whole images it reads
texture as words (histology) and misses small corner labels (X-rays). So text is first
*localised*: a top-hat transform keeps thin structures brighter (or darker) than their
surroundings, grey (burned-in text is white, black or grey), glyph-sized and not solid blobs;
glyphs of similar height side by side are joined into lines; every line is cut out, contrast
stretched, scaled to a common height and stacked on one white page, read by Tesseract in one
call. A reading counts as text when it is confident and is a word (two or more letters or
digits) or a single isolated capital letter large enough to be a marker ("L", "R", "D") and
not also the shape of a line, hook or arrowhead.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi

from medprobe.atomic import atomic_write
from medprobe.audit.ocr import read_words, tesseract_version
from medprobe.datasets.base import Dataset
from medprobe.datasets.pixels import to_rgb
from medprobe.errors import BadImageError
from medprobe.fingerprint import fingerprint
from medprobe.progress import progress_bar

FORMAT_VERSION = 3
_GAP = 24  # white pixels around each line on the OCR page


@dataclass(frozen=True)
class TextBox:
    """One word read in an image, in the image's pixel coordinates."""

    text: str
    confidence: float
    x: int
    y: int
    width: int
    height: int
    polarity: str  # "light" (bright text) or "dark"

    @property
    def token(self) -> str:
        """The word upper-cased with only letters and digits kept (what leakage sees)."""
        return "".join(ch for ch in self.text.upper() if ch.isalnum())


@dataclass
class _Line:
    polarity: str
    y0: int
    y1: int
    x0: int
    x1: int
    glyphs: list[tuple[int, int, np.ndarray]] = field(default_factory=list)  # (y, x, mask)

    @property
    def height(self) -> int:
        return self.y1 - self.y0


class TextDetector(BaseModel):
    """Text localisation + OCR settings (all sizes are fractions of the image's shorter side)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tophat_size: float = Field(0.08, gt=0, le=0.5, description="top-hat window")
    min_contrast: float = Field(45, gt=0, le=255, description="glyph vs local background")
    max_chroma: float = Field(20, ge=0, le=255, description="max(RGB) - min(RGB) of text pixels")
    min_height: float = Field(0.015, gt=0, lt=1, description="smallest glyph")
    max_height: float = Field(0.15, gt=0, le=1, description="largest glyph")
    min_confidence: float = Field(85, ge=0, le=100, description="Tesseract word confidence")
    min_marker_height: float = Field(0.035, gt=0, lt=1, description="single-letter markers")
    #: lone letters that are also the shapes of common non-text marks (I: a line or tube,
    #: J: a hook or wire, A: an arrowhead) do not count as markers on their own
    ambiguous_markers: str = "AIJ"
    line_height: int = Field(40, ge=16, le=128, description="pixels per line on the OCR page")
    max_side: int = Field(1024, ge=64, description="larger images are detected downscaled")
    lang: str = "eng"

    def describe(self) -> dict[str, Any]:
        """Settings plus the Tesseract version: part of the detections' cache key."""
        return {**self.model_dump(), "tesseract": tesseract_version()}

    def detect(self, image: Image.Image) -> list[TextBox]:
        """The words burned into ``image`` (any mode: 16-bit and float images are rescaled to
        8 bits as the dataset loaders do, not clipped)."""
        rgb = to_rgb(image)
        scale = min(1.0, self.max_side / max(rgb.size))
        if scale < 1:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.LANCZOS)
        pixels = np.asarray(rgb, dtype=np.float32)
        grey = pixels.mean(axis=2)
        side = min(grey.shape)
        # A lone narrow glyph below marker size can only read as one small character, which
        # never counts: leave it off the page (ultrasound speckle makes hundreds of them).
        lines = [
            line
            for line in _join_lines(self._glyphs(pixels, grey))
            if len(line.glyphs) > 1
            or line.height >= side * self.min_marker_height
            or line.x1 - line.x0 >= 1.5 * line.height
        ]
        if not lines:
            return []
        boxes = self._read(grey, lines)
        return [
            TextBox(
                b.text,
                b.confidence,
                round(b.x / scale),
                round(b.y / scale),
                max(1, round(b.width / scale)),
                max(1, round(b.height / scale)),
                b.polarity,
            )
            for b in _dedupe(boxes)
        ]

    def _glyphs(self, pixels: np.ndarray, grey: np.ndarray) -> list[tuple]:
        """Glyph-like connected components ``(polarity, y, x, height, width, mask)``."""
        side = min(grey.shape)
        window = max(7, round(side * self.tophat_size)) | 1
        grey_text = (pixels.max(axis=2) - pixels.min(axis=2)) <= self.max_chroma
        low, high = max(4, side * self.min_height), side * self.max_height
        found = []
        for polarity, tophat, extreme in (
            ("light", ndi.white_tophat(grey, size=window), grey >= 225),
            ("dark", ndi.black_tophat(grey, size=window), grey <= 30),
        ):
            # Near-white (near-black) text on a bright (dark) background has little top-hat
            # contrast; accept it at a lower contrast.
            mask = ((tophat >= self.min_contrast) | ((tophat >= 25) & extreme)) & grey_text
            labels, _ = ndi.label(mask, structure=np.ones((3, 3)))
            for i, where in enumerate(ndi.find_objects(labels), 1):
                h, w = where[0].stop - where[0].start, where[1].stop - where[1].start
                if not (low <= h <= high and w <= 4 * high):  # touching letters join
                    continue
                component = labels[where] == i
                # not a dot, a solid blob or a thin curve; solid bars are strokes ("i", "l")
                if 0.1 <= component.mean() <= 0.85 or (component.mean() > 0.85 and h >= 2.5 * w):
                    found.append((polarity, where[0].start, where[1].start, h, w, component))
        return found

    def _read(self, grey: np.ndarray, lines: list[_Line]) -> list[TextBox]:
        page, placed = _page(grey, lines, self.line_height)
        boxes = []
        side = min(grey.shape)
        for text, conf, left, top, width, _ in read_words(page, lang=self.lang):
            if conf < self.min_confidence:
                continue
            row = next((p for p in placed if p[0] <= top + 1 and top < p[1]), None)
            if row is None:
                continue
            _, _, line, x0, factor = row
            chars = [ch for ch in text if ch.isalnum()]
            marker = (
                len(chars) == 1
                and chars[0].isalpha()
                and chars[0].isupper()
                and chars[0] not in self.ambiguous_markers
                and line.height >= side * self.min_marker_height
                and line.x0 > 0
                and line.y0 > 0
                and line.x1 < grey.shape[1]
                and line.y1 < grey.shape[0]
            )
            if len(chars) >= 2 or marker:
                x = max(0, round(x0 + (left - _GAP) / factor))
                boxes.append(
                    TextBox(
                        text,
                        conf,
                        x,
                        line.y0,
                        max(1, round(width / factor)),
                        line.height,
                        line.polarity,
                    )
                )
        return boxes


def _join_lines(glyphs: list[tuple]) -> list[_Line]:
    """Glyphs of one polarity, similar height, overlapping rows and close together -> lines."""
    lines: list[_Line] = []
    for polarity, y, x, h, w, mask in sorted(glyphs, key=lambda g: (g[0], g[2])):
        for line in lines:
            overlap = min(line.y1, y + h) - max(line.y0, y)
            if (
                line.polarity == polarity
                and overlap > 0.5 * min(line.height, h)
                and 0.5 < h / line.height < 2
                and x - line.x1 < max(h, line.height)
            ):
                line.x1 = max(line.x1, x + w)
                line.y0, line.y1 = min(line.y0, y), max(line.y1, y + h)
                line.glyphs.append((y, x, mask))
                break
        else:
            lines.append(_Line(polarity, y, y + h, x, x + w, [(y, x, mask)]))
    return lines


def _page(grey: np.ndarray, lines: list[_Line], line_height: int):
    """Every line cut out (dark text on white, contrast stretched, scaled to ``line_height``)
    and stacked on one page; ``placed`` maps page rows back to lines. Pixels more than one
    pixel away from the line's glyphs become white, so outlines, borders and texture around
    the text do not reach Tesseract."""
    crops = []
    for line in lines:
        pad = max(1, line.height // 4)
        y0, y1 = max(0, line.y0 - pad), min(grey.shape[0], line.y1 + pad)
        x0, x1 = max(0, line.x0 - pad), min(grey.shape[1], line.x1 + pad)
        crop = grey[y0:y1, x0:x1]
        if line.polarity == "light":
            crop = 255 - crop
        lo, hi = np.percentile(crop, 2), np.percentile(crop, 98)
        crop = np.clip((crop - lo) / max(hi - lo, 1.0) * 255, 0, 255)
        near = np.zeros(crop.shape, bool)
        for y, x, mask in line.glyphs:
            near[y - y0 : y - y0 + mask.shape[0], x - x0 : x - x0 + mask.shape[1]] |= mask
        crop = np.where(ndi.binary_dilation(near, np.ones((3, 3))), crop, 255).astype(np.uint8)
        factor = line_height / line.height
        size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
        crops.append((Image.fromarray(crop).resize(size, Image.LANCZOS), line, x0, factor))
    row = max(c[0].height for c in crops) + _GAP
    page = Image.new("L", (max(c[0].width for c in crops) + 2 * _GAP, len(crops) * row + _GAP), 255)
    placed = []
    for k, (image, line, x0, factor) in enumerate(crops):
        top = _GAP + k * row
        page.paste(image, (_GAP, top))
        placed.append((top - _GAP // 2, top + row - _GAP // 2, line, x0, factor))
    return np.asarray(page), placed


def _dedupe(boxes: list[TextBox]) -> list[TextBox]:
    """One word seen in both polarities (outlined text) is kept once, the surer reading."""
    kept: list[TextBox] = []
    for box in sorted(boxes, key=lambda b: -b.confidence):
        if all(_iou(box, k) < 0.5 for k in kept):
            kept.append(box)
    return sorted(kept, key=lambda b: (b.y, b.x))


def _iou(a: TextBox, b: TextBox) -> float:
    w = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    h = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    inter = max(0, w) * max(0, h)
    return inter / (a.width * a.height + b.width * b.height - inter)


@dataclass
class TextDetections:
    """The words found in every image of one dataset (aligned with ``ids``)."""

    dataset: str
    class_names: list[str]
    ids: list[str]
    labels: np.ndarray
    boxes: list[list[TextBox]]
    sizes: list[tuple[int, int]]
    detector: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def has_text(self) -> np.ndarray:
        return np.array([bool(b) for b in self.boxes])

    def boxes_of(self, image_id: str) -> list[TextBox]:
        """The words of one image ([] for an image without text or not detected)."""
        k = self._positions.get(image_id)
        return self.boxes[k] if k is not None else []

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {image_id: k for k, image_id in enumerate(self.ids)}

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
            "boxes": [[asdict(b) for b in image] for image in self.boxes],
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
            [[TextBox(**b) for b in image] for image in data["boxes"]],
            [tuple(s) for s in data["sizes"]],
            data["detector"],
            data["skipped"],
        )


def _detections_path(cache: Any, key: str) -> Path | None:
    if cache is None:
        return None
    root = Path(getattr(cache, "root", cache)).expanduser()
    return root / "text-audit" / f"{key}.json"


def detect_text(
    dataset: Dataset,
    detector: TextDetector | None = None,
    *,
    cache: Any = None,
    workers: int | None = None,
    show_progress: bool = False,
) -> TextDetections:
    """Run ``detector`` on every image of ``dataset`` (in parallel), cached by content.

    ``cache`` is a folder or a :class:`~medprobe.features.FeatureStore`; the key is the
    dataset's fingerprint, the detector settings and the Tesseract version. Unreadable images
    are listed in ``skipped`` with their reason.
    """
    detector = detector or TextDetector()
    settings = detector.describe()  # fails now, in one sentence, if Tesseract is missing
    key = fingerprint("text-detections", FORMAT_VERSION, dataset.fingerprint(), settings)
    path = _detections_path(cache, key)
    if path is not None and path.is_file():
        found = TextDetections.from_json(json.loads(path.read_text()))
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
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(result.to_json()).encode()
        atomic_write(path, lambda h: h.write(data))
    return result
