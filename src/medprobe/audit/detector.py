"""The detector interface, and the two-stage pipeline shared by the learned detectors.

A detector finds *words* (lines of letters or digits, read when readable) and, unless
``marks=False``, non-word *marks* (:mod:`medprobe.audit.marks`: coloured annotations,
frames, rulers), so an image without either is text-free. Settings are frozen
pydantic fields; :meth:`TextDetector.describe` (name, version of the code and weights, every
setting) is part of the detections' cache key and of the report.

The learned detectors (:class:`LearnedDetector`) localise text regions with a scene-text model
(rotated boxes) at two scales, since a lone letter is often found at one and missed at the
other, and add the isolated glyphs the model missed (:mod:`medprobe.audit.glyphs`: where a
laterality marker may stand). Every region is cut out of the full-resolution image, enlarged
to the recogniser's input height in the same warp, and read in the orientations a burned-in
marker can have: as is, then (when that gives no word) turned 180 degrees, mirrored (a flipped
slice), and turned 90/270 degrees (a short region: also mirrored and turned at once); the
surest reading that is a word wins and the box says which orientation read it. A region that
reads as no word in any orientation is localised again close up (``zoom_side``): small stacked
lines boxed as one region, or a letter boxed with what stands next to it, are found apart.
A reading counts as a word when it is confident and has two or more letters/digits, or is one
capital letter that is not also the shape of a line, ring or hook (``I``, ``O``, ``J``), read
with higher confidence, in a region at least ``min_single_height`` tall; a number alone needs
``min_digits`` digits (speckle and nuclei read as lone digits); an isolated glyph counts only
as a capital letter read with ``min_glyph_confidence``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from medprobe.audit.boxes import ORIENTATIONS, TALL, WIDE, TextBox, dedupe, quad_box, rect_iou
from medprobe.audit.glyphs import isolated_glyphs
from medprobe.audit.marks import MarkFinder
from medprobe.datasets.pixels import to_rgb


class TextDetector(BaseModel, ABC):
    """Finds the burned-in words (and marks) of one image; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the registry name (:func:`medprobe.audit.registry.create_detector`)
    name: ClassVar[str]

    marks: MarkFinder | None = Field(
        default_factory=MarkFinder, description="also find non-word marks (None: words only)"
    )
    max_side: int = Field(1024, ge=64, description="larger images are detected downscaled")

    @abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the libraries and weights that change what is found (raises a
        one-sentence :class:`~medprobe.errors.MedprobeError` when they are missing)."""

    @abstractmethod
    def find_words(self, rgb: np.ndarray) -> list[TextBox]:
        """The words of an ``[H, W, 3]`` uint8 image."""

    def describe(self) -> dict[str, Any]:
        """Name, the code's revision, versions and every setting: part of the detections'
        cache key."""
        return {
            "detector": self.name,
            "revision": REVISION,
            **self.versions(),
            **self.model_dump(mode="json"),
        }

    def detect(self, image: Image.Image) -> list[TextBox]:
        """Words then marks of ``image`` (any mode: 16-bit and float images are rescaled to
        8 bits as the dataset loaders do, not clipped), in its own pixel coordinates."""
        rgb = to_rgb(image)
        scale = min(1.0, self.max_side / max(rgb.size))
        if scale < 1:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.LANCZOS)
        pixels = np.asarray(rgb)
        words = self.find_words(pixels)
        found = words + (self.marks.find(pixels, words) if self.marks is not None else [])
        return found if scale == 1 else [b.scaled(1 / scale) for b in found]


#: the revision of the detection code: part of every detector's identity (the detections'
#: cache key), raised when a change of the code changes what is found (2: rapidocr reads each
#: crop as it reads alone)
REVISION = 2

#: the orientations an isolated glyph is read in: first as is, then flipped or on its side
GLYPH = (("upright",), ("mirrored", "rot90", "rot270"))


class LearnedDetector(TextDetector):
    """A scene-text localiser and a recogniser, read in every orientation (module docstring)."""

    #: the height (px) the recogniser reads at: smaller regions are cut out enlarged to it
    read_height: ClassVar[int]

    det_sides: tuple[int, ...] = Field(
        (224, 448),
        min_length=1,
        description="the shorter sides (px) the localiser sees the image at; regions of all "
        "scales are read (a lone letter is found at one scale and missed at another)",
    )
    min_confidence: float = Field(0.7, ge=0, le=1, description="recogniser confidence")
    min_single_confidence: float = Field(
        0.7, ge=0, le=1, description="recogniser confidence of a one-character word"
    )
    min_turned_confidence: float = Field(
        0.9, ge=0, le=1, description="recogniser confidence of a word read turned or mirrored"
    )
    max_height: float = Field(
        0.3, gt=0, le=1, description="tallest word, x the image's shorter side"
    )
    #: lone characters that are also the shapes of lines, rings and hooks in medical images
    ambiguous: str = "Iil1|!jJoO0"
    orientations: bool = Field(True, description="also read mirrored and rotated")
    latin: bool = Field(
        True, description="read Latin letters, digits and punctuation only (False: any script)"
    )
    pad: float = Field(0.15, ge=0, le=1, description="crop margin, x the region's height")
    glyphs: bool = Field(
        True, description="also read isolated glyphs the localiser missed (lone markers)"
    )
    min_glyph_confidence: float = Field(
        0.95, ge=0, le=1, description="recogniser confidence of a letter found as a glyph"
    )
    min_digits: int = Field(
        3,
        ge=1,
        description="fewest digits of a word made of digits alone (dates and ids are longer; "
        "lone digits are what texture reads as: 9 of 13 text-free LC25000 tiles flagged at 1)",
    )
    zoom_side: int = Field(
        96,
        ge=0,
        description="a region that does not read is localised again enlarged to this shorter "
        "side (px; 0: never): stacked small lines boxed as one region, or a letter boxed with "
        "the structure next to it, are then found apart",
    )
    min_single_height: float = Field(
        0.02, ge=0, le=1, description="smallest region of a one-character word, x the side"
    )

    @abstractmethod
    def locate(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Text regions of ``rgb``: ``(quad [4, 2] clockwise from top-left, score)``."""

    @abstractmethod
    def read(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """``(text, confidence 0-1)`` of each upright ``[h, w, 3]`` crop."""

    def find_words(self, rgb: np.ndarray) -> list[TextBox]:
        height, width = rgb.shape[:2]
        regions: list[tuple[np.ndarray, float]] = []
        for det_side in self.det_sides:
            factor = det_side / min(height, width)
            regions += [(quad / factor, score) for quad, score in self.locate(_resize(rgb, factor))]
        regions = _distinct(regions)
        located = len(regions)
        if self.glyphs:  # a lone marker letter the localiser missed (found: score -1)
            taken = [(*q.min(axis=0), *q.max(axis=0)) for q, _ in regions]
            for quad in isolated_glyphs(rgb.mean(axis=2).astype(np.uint8)):
                rect = (*quad.min(axis=0), *quad.max(axis=0))
                if all(rect_iou(rect, other) < 0.2 for other in taken):
                    regions.append((quad, -1.0))
        if not regions:
            return []
        cut = [_warp(rgb, quad, self.pad, self.read_height) for quad, _ in regions]
        best = self._read_regions(cut, [k >= located for k in range(len(cut))])
        if self.zoom_side:  # regions that did not read, localised again close up
            inner = [
                quad
                for k in range(located)
                if k not in best
                for quad in self._zoom_in(rgb, regions[k][0])
            ]
            found = self._read_regions(
                [_warp(rgb, quad, self.pad, self.read_height) for quad in inner],
                [False] * len(inner),
            )
            for j, reading in found.items():
                best[len(regions)] = reading
                regions.append((inner[j], 0.0))
        side = min(height, width)
        boxes = []
        for k, (text, confidence, name) in best.items():
            extent = min(_sides(regions[k][0]))
            single = sum(ch.isalnum() for ch in text) == 1
            if extent <= self.max_height * side and (
                not single or extent >= self.min_single_height * side
            ):
                boxes.append(quad_box(regions[k][0], text, confidence, name))
        return dedupe(boxes)

    def _zoom_in(self, rgb: np.ndarray, quad: np.ndarray) -> list[np.ndarray]:
        """Text regions inside ``quad`` (grown by ``pad``), localised on it enlarged so its
        shorter side is ``zoom_side`` px, that are not ``quad`` itself again."""
        height, width = rgb.shape[:2]
        x0, y0 = np.floor(quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
        grow = max(2, round(self.pad * min(x1 - x0, y1 - y0)))
        x0, y0 = max(0, x0 - grow), max(0, y0 - grow)
        x1, y1 = min(width, x1 + grow), min(height, y1 + grow)
        factor = self.zoom_side / max(1, min(x1 - x0, y1 - y0))
        if factor < 1.5:  # already seen this large
            return []
        outer = (*quad.min(axis=0), *quad.max(axis=0))
        inner = []
        for found, _ in self.locate(_resize(rgb[y0:y1, x0:x1], factor)):
            found = found / factor + (x0, y0)
            if rect_iou((*found.min(axis=0), *found.max(axis=0)), outer) < 0.6:
                inner.append(found)
        return inner

    def _read_regions(
        self, cut: list[np.ndarray], glyph: list[bool]
    ) -> dict[int, tuple[str, float, str]]:
        """The surest word reading ``(text, confidence, orientation)`` of each crop that
        reads as one (``glyph``: an isolated-glyph proposal, read as a marker or not at all)."""
        best: dict[int, tuple[str, float, str]] = {}
        # Most burned-in text is upright: every region is read that way first, and only the
        # regions that did not read as a word are read in the other orientations.
        for attempt in range(2 if self.orientations else 1):
            crops, owners, names = [], [], []
            for k in range(len(cut)):
                if k in best:
                    continue
                turns = GLYPH[attempt] if glyph[k] else self._orientations(cut[k])[attempt]
                for name in turns:
                    crops.append(np.ascontiguousarray(ORIENTATIONS[name](cut[k])))
                    owners.append(k)
                    names.append(name)
            if not crops:
                break
            for k, name, (text, confidence) in zip(owners, names, self.read(crops), strict=True):
                text = text.strip()
                if glyph[k] and not self._is_marker(text, confidence):
                    continue
                if self._is_word(text, confidence, name) and confidence > best.get(k, ("", -1))[1]:
                    best[k] = (text, confidence, name)
        return best

    @staticmethod
    def _orientations(crop: np.ndarray) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The orientations to read a crop in first, and those to try if none reads."""
        ratio = crop.shape[0] / max(1, crop.shape[1])
        if ratio > 1.5:  # a vertical line of text, or one tall letter
            return (*TALL[:2], "upright"), (*TALL[2:], "mirrored")
        if ratio < 0.67:
            return WIDE[:1], WIDE[1:]
        # a lone glyph or a short word in a square box: any of the other seven views (a
        # flipped film is also turned on its side)
        return WIDE[:1], (*WIDE[1:], *TALL)

    def _is_marker(self, text: str, confidence: float) -> bool:
        """An isolated glyph counts only as a confidently read capital letter: digits and
        lower-case letters are what texture reads as."""
        return (
            len(text) == 1
            and text.isupper()
            and text not in self.ambiguous
            and confidence >= self.min_glyph_confidence
        )

    def _is_word(self, text: str, confidence: float, orientation: str = "upright") -> bool:
        chars = [ch for ch in text if ch.isalnum()]
        if self.latin and any(not ch.isascii() for ch in chars):
            return False
        # every extra orientation is another chance for texture to read as a word
        turned = orientation not in ("upright", "rot90", "rot270")
        needed = self.min_turned_confidence if turned else 0.0
        if all(ch.isdigit() for ch in chars) and len(chars) < self.min_digits:
            return False  # a lone number: what speckle and nuclei read as
        if len(chars) >= 2:
            return confidence >= max(needed, self.min_confidence)
        return (  # a lone marker: a capital letter, not mirrored and turned at once (a
            # letter-shaped blot of texture has more ways to read as one than a marker has)
            len(chars) == 1
            and not orientation.startswith("mirrored-")
            and chars[0].isupper()
            and chars[0] not in self.ambiguous
            and confidence >= max(needed, self.min_single_confidence)
        )


def _distinct(regions: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
    """One region per place (found at several scales: the best-scored one)."""
    kept: list[tuple[np.ndarray, float, tuple]] = []
    for quad, score in sorted(regions, key=lambda r: -r[1]):
        rect = (*quad.min(axis=0), *quad.max(axis=0))
        if all(rect_iou(rect, other) < 0.5 for _, _, other in kept):
            kept.append((quad, score, rect))
    return [(quad, score) for quad, score, _ in kept]


def _resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    if abs(factor - 1) < 1e-3:
        return rgb
    import cv2

    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)


def _sides(quad: np.ndarray) -> tuple[float, float]:
    """Width (along the first side) and height of a quad."""
    width = max(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3]))
    height = max(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1]))
    return float(width), float(height)


def _warp(rgb: np.ndarray, quad: np.ndarray, pad: float, least: int = 0) -> np.ndarray:
    """The region ``quad`` cut out upright (its first side horizontal), grown by ``pad`` x its
    height on every side, and enlarged so its shorter side is at least ``least`` pixels.

    Enlarging in the same (bicubic) warp that cuts the region out interpolates the image once:
    a 10-pixel glyph resized again by the recogniser reads differently at every sub-pixel
    shift of its box (an "LT" read at 0.99 from one scale's box and 0.71 from the other's).
    """
    import cv2

    quad = np.asarray(quad, dtype=np.float32)
    width, height = _sides(quad)
    grow = pad * min(width, height)
    zoom = max(1.0, least / max(1.0, min(width, height) + 2 * grow))
    out_w = max(2, round((width + 2 * grow) * zoom))
    out_h = max(2, round((height + 2 * grow) * zoom))
    target = zoom * np.array(
        [[grow, grow], [grow + width, grow], [grow + width, grow + height], [grow, grow + height]],
        dtype=np.float32,
    )
    matrix = cv2.getPerspectiveTransform(quad, target)
    return cv2.warpPerspective(
        rgb, matrix, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
