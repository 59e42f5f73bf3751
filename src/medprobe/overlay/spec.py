"""The overlay spec: what text, where, how big, what it looks like. Serialisable; its
:meth:`OverlaySpec.describe` is part of every feature cache key."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medprobe.errors import MedprobeError
from medprobe.fonts import DEFAULT_FONT, font_path

Source = Literal["true_class", "wrong_class", "random_word", "clinical", "fixed"]
Position = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center", "random"]

#: Words with no medical meaning, for "does the model read?" probes (text readability).
DEFAULT_VOCABULARY = ("apple", "river", "orange", "window", "tiger", "piano", "garden", "rocket")


class OverlaySpec(BaseModel):
    """Text drawn on every image.

    - ``true_class`` / ``wrong_class``: the image's class name, or another class's (a
      typographic attack: does zero-shot follow the written word?);
    - ``random_word``: a word from ``vocabulary`` (readability: can a probe decode the word?);
    - ``clinical``: burned-in-looking strings: dates, patient IDs, "L"/"R" markers;
    - ``fixed``: ``text`` on every image.

    ``size`` is the text height as a fraction of the image height; ``position`` a corner, the
    centre, or ``random`` (seeded per image). The font is DejaVu Sans from matplotlib unless a
    ``.ttf`` path is given, so rendering is identical on every machine.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    source: Source = "wrong_class"
    text: str = ""
    vocabulary: tuple[str, ...] = DEFAULT_VOCABULARY
    font: str = DEFAULT_FONT
    size: float = Field(0.12, gt=0, le=0.8)
    position: Position = "bottom-right"
    colour: tuple[int, int, int] = (255, 255, 255)
    opacity: float = Field(1.0, gt=0, le=1)
    outline: tuple[int, int, int] | None = (0, 0, 0)
    margin: float = Field(0.03, ge=0, le=0.25)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> OverlaySpec:
        if self.source == "random_word" and not [w for w in self.vocabulary if w.strip()]:
            raise ValueError("overlay vocabulary is empty")
        if self.source == "fixed" and not self.text.strip():
            raise ValueError("a fixed overlay needs text")
        return self

    @property
    def label(self) -> str:
        """A short name for tables and reports."""
        return self.name or f"{self.source}@{self.position}"

    def describe(self) -> dict:
        """Everything that changes the pixels (the font by content, not just by name)."""
        data = self.model_dump(mode="json", exclude={"name"})
        try:
            data["font_file"] = font_path(self.font).name
        except MedprobeError:
            raise
        return data
