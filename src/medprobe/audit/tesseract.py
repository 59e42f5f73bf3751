"""``tesseract``: candidate glyphs by morphology, lines of glyphs, then Tesseract OCR.

medprobe's first detector, kept for comparison (``benchmarks/text_detection.py``); it needs
the ``tesseract`` program (a system package) and finds upright grey text only.

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

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydantic import Field
from scipy import ndimage as ndi

from medprobe.audit.boxes import TextBox, dedupe
from medprobe.audit.detector import TextDetector
from medprobe.audit.ocr import read_words, tesseract_version

_GAP = 24  # white pixels around each line on the OCR page


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


class TesseractDetector(TextDetector):
    """Text localisation + OCR settings (all sizes are fractions of the image's shorter side)."""

    name = "tesseract"

    tophat_size: float = Field(0.08, gt=0, le=0.5, description="top-hat window")
    min_contrast: float = Field(45, gt=0, le=255, description="glyph vs local background")
    max_chroma: float = Field(20, ge=0, le=255, description="max(RGB) - min(RGB) of text pixels")
    min_height: float = Field(0.015, gt=0, lt=1, description="smallest glyph")
    max_height: float = Field(0.15, gt=0, le=1, description="largest glyph")
    min_confidence: float = Field(0.85, ge=0, le=1, description="Tesseract word confidence")
    min_marker_height: float = Field(0.035, gt=0, lt=1, description="single-letter markers")
    #: lone letters that are also the shapes of common non-text marks (I: a line or tube,
    #: J: a hook or wire, A: an arrowhead) do not count as markers on their own
    ambiguous_markers: str = "AIJ"
    line_height: int = Field(40, ge=16, le=128, description="pixels per line on the OCR page")
    lang: str = "eng"

    def versions(self) -> dict[str, str]:
        return {"tesseract": tesseract_version()}

    def find_words(self, rgb: np.ndarray) -> list[TextBox]:
        pixels = rgb.astype(np.float32)
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
        return dedupe(self._read(grey, lines))

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
            conf /= 100  # Tesseract's 0-100 scale
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
