"""A font that renders identically everywhere: DejaVu Sans, shipped inside matplotlib."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib
from PIL import ImageFont

from medprobe.errors import MedprobeError

DEFAULT_FONT = "DejaVuSans-Bold"


def font_path(name: str = DEFAULT_FONT) -> Path:
    """Path of a bundled font by name (e.g. ``DejaVuSans``), or of a ``.ttf``/``.otf`` file."""
    candidate = Path(name)
    if candidate.suffix.lower() in {".ttf", ".otf"}:
        if not candidate.is_file():
            raise MedprobeError(f"font file {name!r} does not exist")
        return candidate
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"
    if not path.is_file():
        raise MedprobeError(
            f"font {name!r} is not bundled; use a DejaVu name such as 'DejaVuSans' "
            "or give the path of a .ttf file"
        )
    return path


@lru_cache(maxsize=64)
def load_font(size: int, name: str = DEFAULT_FONT) -> ImageFont.FreeTypeFont:
    """The font at a pixel size (cached: synthetic generation draws thousands of labels)."""
    return ImageFont.truetype(str(font_path(name)), size=max(int(size), 1))
