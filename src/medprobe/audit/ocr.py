"""Tesseract, through pytesseract: availability, version, and reading one page of text lines."""

from __future__ import annotations

import functools
import os
import shutil

import numpy as np
from PIL import Image

from medprobe.errors import MedprobeError

INSTALL_HINT = (
    "install Tesseract OCR (Debian/Ubuntu: `sudo apt-get install tesseract-ocr`; macOS: "
    "`brew install tesseract`; conda: `conda install -c conda-forge tesseract`) or point "
    "MEDPROBE_TESSERACT at the tesseract executable"
)


@functools.cache
def tesseract_version() -> str:
    """The Tesseract version, or a one-sentence :class:`MedprobeError` saying how to install it."""
    import pytesseract

    command = os.environ.get("MEDPROBE_TESSERACT") or shutil.which("tesseract")
    if not command:
        raise MedprobeError(
            f"the text audit needs the tesseract program, which is not installed: {INSTALL_HINT}"
        )
    pytesseract.pytesseract.tesseract_cmd = command
    try:
        return str(pytesseract.get_tesseract_version())
    except (pytesseract.TesseractNotFoundError, OSError) as exc:
        raise MedprobeError(
            f"tesseract at {command} does not run ({exc}): {INSTALL_HINT}"
        ) from None


def read_words(
    page: np.ndarray, psm: int = 6, lang: str = "eng"
) -> list[tuple[str, float, int, int, int, int]]:
    """``(text, confidence 0-100, left, top, width, height)`` of each word Tesseract reads on a
    grey ``page`` (dark text on white)."""
    import pytesseract

    tesseract_version()
    # One Tesseract thread per call: the audit runs several calls in parallel instead.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    data = pytesseract.image_to_data(
        Image.fromarray(page), lang=lang, config=f"--psm {psm}", output_type=pytesseract.Output.DICT
    )
    return [
        (text.strip(), float(conf), left, top, width, height)
        for text, conf, left, top, width, height in zip(
            data["text"],
            data["conf"],
            data["left"],
            data["top"],
            data["width"],
            data["height"],
            strict=True,
        )
        if text.strip() and float(conf) >= 0
    ]
