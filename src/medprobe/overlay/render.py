"""Draw an :class:`OverlaySpec` on images, deterministically per (spec, image index)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image, ImageDraw

from medprobe.errors import BadImageError
from medprobe.fonts import load_font
from medprobe.overlay.spec import OverlaySpec

_CORNERS = {
    "top-left": (0.0, 0.0),
    "top-right": (1.0, 0.0),
    "bottom-left": (0.0, 1.0),
    "bottom-right": (1.0, 1.0),
    "center": (0.5, 0.5),
}


class TextDoesNotFit(BadImageError):
    """The overlay text is too big for one image (that image is skipped, with this reason)."""


class Labelled(Protocol):
    """What the overlay needs of a dataset record (a :class:`~medprobe.datasets.Record`)."""

    label: int


class TextOverlay:
    """The overlay as an image transform: ``overlay(image, record, index) -> image``.

    Implements the extractor's overlay protocol (``__call__`` and ``describe``).
    """

    def __init__(self, spec: OverlaySpec, class_names: Sequence[str]) -> None:
        self.spec = spec
        self.class_names = list(class_names)
        load_font(10, spec.font)  # a missing font fails now, not in a worker

    def describe(self) -> dict:
        return self.spec.describe()

    @property
    def uses_labels(self) -> bool:
        """Whether the text depends on each image's label (a feature-store key then includes
        the labels and class names; other overlays' features do not depend on them)."""
        return self.spec.source in ("true_class", "wrong_class")

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.spec.seed, index, 7])

    def text_for(self, record: Labelled, index: int) -> str:
        """The string written on image ``index`` (a pure function of spec, record, index)."""
        spec, rng = self.spec, self._rng(index)
        if spec.source == "fixed":
            return spec.text
        if spec.source == "true_class":
            return self.class_names[record.label]
        if spec.source == "wrong_class":
            others = [c for i, c in enumerate(self.class_names) if i != record.label]
            return others[int(rng.integers(len(others)))]
        if spec.source == "random_word":
            words = [w for w in spec.vocabulary if w.strip()]
            return words[int(rng.integers(len(words)))]
        kind = int(rng.integers(3))  # clinical-looking strings
        if kind == 0:
            year, month, day = rng.integers(2005, 2025), rng.integers(1, 13), rng.integers(1, 29)
            return f"{year}-{month:02d}-{day:02d}"
        if kind == 1:
            return f"ID {int(rng.integers(100000, 999999))}"
        return "L" if rng.random() < 0.5 else "R"

    def placement(self, image_size: tuple[int, int], text: str, index: int):
        """(font, stroke, xy, box) for ``text`` on an image of ``image_size``."""
        width, height = image_size
        spec = self.spec
        font = load_font(max(6, round(height * spec.size)), spec.font)
        stroke = max(1, round(font.size / 14)) if spec.outline is not None else 0
        left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
            (0, 0), text, font=font, stroke_width=stroke
        )
        text_w, text_h = right - left, bottom - top
        margin_x, margin_y = round(width * spec.margin), round(height * spec.margin)
        free_w, free_h = width - 2 * margin_x - text_w, height - 2 * margin_y - text_h
        if free_w < 0 or free_h < 0:
            raise TextDoesNotFit(
                f"overlay text {text!r} at size {spec.size} ({text_w}x{text_h} px) does not fit a "
                f"{width}x{height} image; use a smaller size or shorter text"
            )
        fx, fy = (
            self._rng(index).random(2) if spec.position == "random" else _CORNERS[spec.position]
        )
        x = margin_x + round(free_w * fx) - left
        y = margin_y + round(free_h * fy) - top
        return font, stroke, (x, y), (x + left, y + top, x + right, y + bottom)

    def candidate_texts(self) -> list[str]:
        """The strings this overlay can write (clinical ones: their longest shape)."""
        spec = self.spec
        return {
            "fixed": [spec.text],
            "true_class": self.class_names,
            "wrong_class": self.class_names,
            "random_word": [w for w in spec.vocabulary if w.strip()],
            "clinical": ["2024-12-28", "ID 999999", "R"],
        }[spec.source]

    def draw(self, image: Image.Image, text: str, index: int) -> tuple[Image.Image, tuple]:
        """``image`` with ``text`` drawn, and the text's bounding box."""
        spec = self.spec
        font, stroke, xy, box = self.placement(image.size, text, index)
        layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
        alpha = round(255 * spec.opacity)
        ImageDraw.Draw(layer).text(
            xy,
            text,
            font=font,
            fill=(*spec.colour, alpha),
            stroke_width=stroke,
            stroke_fill=(*spec.outline, alpha) if spec.outline is not None else None,
        )
        out = Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")
        return out, box

    def __call__(self, image: Image.Image, record: Labelled, index: int) -> Image.Image:
        return self.draw(image, self.text_for(record, index), index)[0]
