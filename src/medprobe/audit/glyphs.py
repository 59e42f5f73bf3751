"""Isolated glyphs: where a lone marker letter ("L", "R", "D") may stand.

Scene-text localisers are trained on lines of text and often miss a single letter on its
own, which is exactly how laterality markers are burned in. Here a top-hat transform keeps
strokes brighter (or darker) than their surroundings; a connected component of glyph size
and glyph shape, with little else around it (not texture, not a line of text), is a place the
recogniser should read.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def isolated_glyphs(
    grey: np.ndarray,
    *,
    window: float = 0.08,
    contrast: float = 45,
    min_height: float = 0.025,
    max_height: float = 0.15,
    limit: int = 4,
) -> list[np.ndarray]:
    """Up to ``limit`` quads ``[4, 2]`` (clockwise from top-left) around isolated glyphs of
    ``grey`` (sizes are fractions of its shorter side), most contrasted first."""
    import cv2

    side = min(grey.shape)
    size = max(7, round(side * window)) | 1
    kernel = np.ones((size, size), np.uint8)
    low, high = max(5, min_height * side), max_height * side
    found = []
    for operation in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        tophat = cv2.morphologyEx(grey, operation, kernel)
        mask = tophat >= contrast
        labels, _ = ndi.label(mask, np.ones((3, 3)))
        for i, where in enumerate(ndi.find_objects(labels), 1):
            h, w = where[0].stop - where[0].start, where[1].stop - where[1].start
            if not (low <= h <= high and 0.2 * h <= w <= 1.2 * h):
                continue
            mine = labels[where] == i
            if not 0.15 <= mine.mean() <= 0.8:  # a glyph, not a dot, blob or bar
                continue
            # drawn with strokes: no point is far from the edge (a nucleus or a bubble is)
            if ndi.distance_transform_edt(np.pad(mine, 1)).max() > max(2.0, 0.22 * h):
                continue
            grow = 3 * h // 4 + 1
            y0, x0 = max(0, where[0].start - grow), max(0, where[1].start - grow)
            y1, x1 = where[0].stop + grow, where[1].stop + grow
            around = mask[y0:y1, x0:x1].sum()
            if mine.sum() < 0.8 * around:  # texture or a line of text: not alone
                continue
            score = float(tophat[where][mine].mean())
            pad = max(2, h // 4)
            quad = np.array(
                [
                    [where[1].start - pad, where[0].start - pad],
                    [where[1].stop + pad, where[0].start - pad],
                    [where[1].stop + pad, where[0].stop + pad],
                    [where[1].start - pad, where[0].stop + pad],
                ],
                float,
            )
            found.append((score, quad))
    found.sort(key=lambda item: -item[0])
    return [quad for _, quad in found[:limit]]
