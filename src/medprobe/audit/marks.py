"""Non-word marks burned into medical images: coloured annotations, frames, rulers.

None of these is read as text, but each can give the label away just as well (calipers are
drawn on lesions, not on normal tissue), so the audit counts them as their own kind of box
(``kind="mark"``), and a text-free image is free of both.

- ``colour``: in a grey-scale image (an X-ray, an ultrasound), pixels of strong chroma are
  annotations (Doppler boxes, yellow calipers and labels, coloured icons); in colour images
  (dermoscopy, histology, fundus) chroma is anatomy and nothing is marked.
- ``frame``: a thin straight line (1-3 px) along most of one side, near that side: the border
  of a screenshot or an inset image.
- ``ruler``: six or more short parallel strokes at a regular spacing along an edge: a
  millimetre ruler or an ultrasound depth scale.

Grey calipers (small "+" crosses on ultrasound) are not found: on the benchmark's images a
cross finder could not tell them from speckle and nuclei; coloured ones are ``colour`` marks.

Parts of marks that lie inside a found word are left to the word.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi

from medprobe.audit.boxes import TextBox


class MarkFinder(BaseModel):
    """Settings of the mark finder (sizes are fractions of the image's shorter side)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    colour: bool = True
    min_chroma: float = Field(60, gt=0, le=255, description="max-min RGB of a coloured mark")
    #: an image is grey-scale when at most this share of its pixels is coloured
    max_coloured_share: float = Field(0.03, ge=0, le=1)
    #: and 90% of its lit pixels are this close to grey
    max_grey_chroma: float = Field(15, ge=0, le=255)
    min_colour_area: float = Field(2e-4, ge=0, le=1, description="share of the image")
    frames: bool = True
    min_frame_length: float = Field(0.8, gt=0, le=1)
    rulers: bool = True
    min_ticks: int = Field(6, ge=3)
    contrast: float = Field(40, gt=0, le=255, description="thin strokes vs surroundings")
    edge_band: float = Field(0.15, gt=0, le=0.5, description="frames and rulers lie this close")

    def find(self, rgb: np.ndarray, words: Sequence[TextBox] = ()) -> list[TextBox]:
        """The marks of an ``[H, W, 3]`` uint8 image, outside the boxes of ``words``."""
        pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
        grey = pixels.mean(axis=2).astype(np.uint8)
        in_words = np.zeros(grey.shape, bool)
        for w in words:
            in_words[w.y : w.y + w.height, w.x : w.x + w.width] = True
        found: list[TextBox] = []
        if self.colour:
            found += self._colour(pixels, in_words)
        if self.frames or self.rulers:
            thin = _thin_strokes(grey, self.contrast) & ~in_words
            if self.frames:
                found += self._frames(thin)
            if self.rulers:
                found += self._rulers(thin)
        return found

    def _colour(self, pixels: np.ndarray, in_words: np.ndarray) -> list[TextBox]:
        chroma = pixels.max(axis=2) - pixels.min(axis=2)  # uint8: max >= min
        coloured = chroma >= self.min_chroma
        share = coloured.mean()
        lit = pixels.max(axis=2) > 40
        if share == 0 or share > self.max_coloured_share or not lit.any():
            return []
        if np.percentile(chroma[lit], 90) > self.max_grey_chroma:  # chroma is anatomy
            return []
        joined = ndi.binary_dilation(coloured, np.ones((5, 5)))
        labels, _ = ndi.label(joined)
        boxes = []
        smallest = self.min_colour_area * coloured.size
        for i, where in enumerate(ndi.find_objects(labels), 1):
            mine = coloured[where] & (labels[where] == i)
            if mine.sum() < smallest or in_words[where][mine].mean() > 0.5:
                continue
            boxes.append(_box("colour", where, float(chroma[where][mine].mean() / 255)))
        return boxes

    def _frames(self, thin: np.ndarray) -> list[TextBox]:
        height, width = thin.shape
        band = self.edge_band * min(height, width)
        boxes = []
        for axis, length in ((1, width), (0, height)):  # horizontal lines, then vertical
            runs = _longest_runs(thin if axis == 1 else thin.T)
            lines = np.flatnonzero(runs >= self.min_frame_length * length)
            for group in np.split(lines, np.flatnonzero(np.diff(lines) > 1) + 1):
                if not len(group) or len(group) > 3:
                    continue
                other = height if axis == 1 else width
                gap = min(group[0], other - 1 - group[-1])
                # the outermost rows are resizing artefacts, not a drawn frame
                if gap > band or gap < 2:
                    continue
                if axis == 1:
                    where = (slice(group[0], group[-1] + 1), slice(0, width))
                else:
                    where = (slice(0, height), slice(group[0], group[-1] + 1))
                boxes.append(_box("frame", where, 1.0))
        return boxes

    def _rulers(self, thin: np.ndarray) -> list[TextBox]:
        height, width = thin.shape
        side = min(height, width)
        band = max(3, round(self.edge_band * side))
        edges = {
            "top": (slice(0, band), slice(None)),
            "bottom": (slice(height - band, height), slice(None)),
            "left": (slice(None), slice(0, band)),
            "right": (slice(None), slice(width - band, width)),
        }
        boxes = []
        for name, where in edges.items():
            strip = thin[where] if name in ("top", "bottom") else thin[where].T
            ticks = _regular_ticks(strip.sum(axis=0) >= 3, self.min_ticks)
            if ticks is None:
                continue
            lo, hi = ticks
            rows = np.flatnonzero(strip[:, lo:hi].any(axis=1))
            offset = {"top": 0, "left": 0, "bottom": height - band, "right": width - band}[name]
            across = slice(offset + rows.min(), offset + rows.max() + 1)
            box = (across, slice(lo, hi)) if name in ("top", "bottom") else (slice(lo, hi), across)
            boxes.append(_box("ruler", box, 1.0))
        return boxes


def _thin_strokes(grey: np.ndarray, contrast: float) -> np.ndarray:
    """Bright or dark strokes at most a few pixels wide (top-hats of a 7-pixel square)."""
    import cv2

    kernel = np.ones((7, 7), np.uint8)
    light = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, kernel) >= contrast
    dark = cv2.morphologyEx(grey, cv2.MORPH_BLACKHAT, kernel) >= contrast
    return light | dark


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    """The longest run of True in every row (a straight line allows one-pixel gaps)."""
    closed = ndi.binary_closing(mask, np.ones((1, 3))) | mask
    runs, n = ndi.label(closed, structure=[[0, 0, 0], [1, 1, 1], [0, 0, 0]])
    best = np.zeros(mask.shape[0], int)
    if n:
        rows = np.nonzero(runs)[0]
        lengths = np.bincount(runs[runs > 0])
        np.maximum.at(best, rows, lengths[runs[runs > 0]])
    return best


def _regular_ticks(columns: np.ndarray, min_ticks: int) -> tuple[int, int] | None:
    """The span of ``min_ticks`` or more evenly spaced stroke positions, if there is one."""
    labels, n = ndi.label(columns)
    if n < min_ticks:
        return None
    centres = np.array(ndi.center_of_mass(columns, labels, range(1, n + 1)))[:, 0]
    gaps = np.diff(centres)
    regular = np.abs(gaps - np.median(gaps)) <= 0.2 * np.median(gaps)
    # the longest chain of regular gaps
    best, start, run = (0, 0), 0, 0
    for k, ok in enumerate(regular):
        run = run + 1 if ok else 0
        if run == 1:
            start = k
        if run > best[0]:
            best = (run, start)
    if best[0] + 1 < min_ticks or np.median(gaps) < 3:
        return None
    first, last = best[1], best[1] + best[0]
    return int(centres[first]) - 1, int(centres[last]) + 2


def _box(name: str, where: tuple[slice, slice], confidence: float) -> TextBox:
    y, x = where
    return TextBox(
        name,
        round(confidence, 3),
        int(x.start),
        int(y.start),
        int(x.stop - x.start),
        int(y.stop - y.start),
        kind="mark",
    )
