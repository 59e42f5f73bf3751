"""What a detector finds in an image: a box, its kind, its text and how it was read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Kind = Literal["word", "mark"]
#: Non-word marks a detector can name (``TextBox.text`` of a ``mark``).
MARKS = ("colour", "frame", "ruler")

#: Each orientation names what happened to the text in the image and maps a crop of it back
#: to upright: "mirrored" text was flipped left-right, "rot90" text runs bottom to top
#: (turned 90 degrees counter-clockwise), "rot270" top to bottom.
ORIENTATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "upright": lambda a: a,
    "rot180": lambda a: np.rot90(a, 2),
    "mirrored": lambda a: a[:, ::-1],
    "mirrored-rot180": lambda a: a[::-1],
    "rot90": lambda a: np.rot90(a, -1),
    "rot270": lambda a: np.rot90(a, 1),
    "mirrored-rot90": lambda a: np.rot90(a, -1)[:, ::-1],
    "mirrored-rot270": lambda a: np.rot90(a, 1)[:, ::-1],
}
WIDE = ("upright", "rot180", "mirrored", "mirrored-rot180")
TALL = ("rot90", "rot270", "mirrored-rot90", "mirrored-rot270")


@dataclass(frozen=True)
class TextBox:
    """One word (a line of letters/digits) or one non-word mark, in image pixels.

    ``x, y, width, height`` bound the box; ``quad`` holds its four corners when the detector
    gives a rotated box (``angle``: degrees of its long side from horizontal). ``text`` is the
    reading of a word ("" when it was found but not readable) or the name of a mark (one of
    :data:`MARKS`); ``confidence`` is in [0, 1]; ``orientation`` says which view of the crop
    (:data:`ORIENTATIONS`) read it.
    """

    text: str
    confidence: float
    x: int
    y: int
    width: int
    height: int
    kind: Kind = "word"
    orientation: str = "upright"
    angle: float = 0.0
    quad: tuple[tuple[float, float], ...] = ()

    @property
    def token(self) -> str:
        """What leakage sees: a word upper-cased with only letters and digits kept; a mark as
        ``<name>``."""
        if self.kind == "mark":
            return f"<{self.text}>"
        return "".join(ch for ch in self.text.upper() if ch.isalnum())

    @property
    def rect(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, exclusive."""
        return self.x, self.y, self.x + self.width, self.y + self.height

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["quad"] = [list(p) for p in self.quad]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextBox:
        return cls(**{**data, "quad": tuple(tuple(p) for p in data.get("quad", ()))})

    def scaled(self, factor: float) -> TextBox:
        """The same box in an image ``factor`` times as large."""
        return TextBox(
            self.text,
            self.confidence,
            round(self.x * factor),
            round(self.y * factor),
            max(1, round(self.width * factor)),
            max(1, round(self.height * factor)),
            self.kind,
            self.orientation,
            self.angle,
            tuple((px * factor, py * factor) for px, py in self.quad),
        )


def rect_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` rectangles."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def quad_box(
    quad: np.ndarray, text: str, confidence: float, orientation: str, kind: Kind = "word"
) -> TextBox:
    """A :class:`TextBox` bounding the four corners ``quad`` (clockwise from top-left)."""
    quad = np.asarray(quad, dtype=float)
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    top = quad[1] - quad[0]
    side = quad[3] - quad[0]
    long = top if np.hypot(*top) >= np.hypot(*side) else side
    angle = float(np.degrees(np.arctan2(long[1], long[0])))
    angle = (angle + 90) % 180 - 90  # a line has no direction: keep it in [-90, 90)
    return TextBox(
        text,
        float(confidence),
        int(max(0, x0)),
        int(max(0, y0)),
        int(max(1, x1 - max(0, x0))),
        int(max(1, y1 - max(0, y0))),
        kind,
        orientation,
        round(angle, 1),
        tuple((round(float(px), 1), round(float(py), 1)) for px, py in quad),
    )


def dedupe(boxes: Sequence[TextBox], overlap: float = 0.5) -> list[TextBox]:
    """One box per place: of boxes overlapping by ``overlap`` IoU, the surest, in reading order."""
    kept: list[TextBox] = []
    for box in sorted(boxes, key=lambda b: -b.confidence):
        if all(rect_iou(box.rect, k.rect) < overlap for k in kept):
            kept.append(box)
    return sorted(kept, key=lambda b: (b.y, b.x))
