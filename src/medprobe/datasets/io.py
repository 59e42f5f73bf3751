"""Open one image file as RGB, converting what can be converted and explaining what cannot.

Medical data is messy: CMYK JPEGs, RGBA and palette PNGs, 16-bit greyscale, DICOM. Those are
converted. Empty, truncated, non-image and oversized files raise :class:`BadImageError` with a
short reason, so a run can skip the record, count it and report it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from medprobe.datasets.dicom import read_dicom
from medprobe.datasets.pixels import to_rgb
from medprobe.errors import BadImageError

#: Larger images are refused (decompression-bomb guard). 150 megapixels leaves room for
#: full-field mammograms and large dermoscopy photos while a crafted file cannot eat the memory.
MAX_PIXELS = 150_000_000

DICOM_SUFFIXES = {".dcm", ".dicom"}


COMMON_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def is_dicom(path: Path) -> bool:
    """By extension, or by the ``DICM`` magic at byte 128 (DICOM files often have no extension).

    Files with a common image extension are not opened to look (it would double the I/O).
    """
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in COMMON_IMAGE_SUFFIXES:
        return False
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def open_image(path: str | Path, reduce_to: int | None = None) -> Image.Image:
    """The file at ``path`` as a fully decoded RGB PIL image, or :class:`BadImageError`
    (``reduce_to``: see :func:`decode_image`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadImageError(f"cannot read file: {exc.strerror or exc}") from None
    if size == 0:
        raise BadImageError("empty file (0 bytes)")
    if is_dicom(path):
        return read_dicom(path)
    return decode_image(path, reduce_to)


def decode_image(source: str | Path | BinaryIO, reduce_to: int | None = None) -> Image.Image:
    """Decode an image file (a path or an open binary file) to RGB, or :class:`BadImageError`.

    With ``reduce_to``, a JPEG may be decoded at 1/2, 1/4 or 1/8 scale in the DCT domain
    (libjpeg's draft mode), as long as both sides stay at least ``reduce_to`` pixels: for a
    model input of 224 px, a 600x450 photo decodes as 300x225, about 4x less work for the
    decoder and the resize that follows. Other formats always decode in full.
    """
    try:
        with warnings.catch_warnings():
            # Our own MAX_PIXELS check below replaces PIL's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise BadImageError(
                        f"image too large ({width}x{height} pixels; limit {MAX_PIXELS:,})"
                    )
                if reduce_to and image.format == "JPEG":
                    image.draft(image.mode, (reduce_to, reduce_to))
                image.load()
                return to_rgb(image)
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"image too large (decompression-bomb guard: {exc})") from None
    except UnidentifiedImageError:
        raise BadImageError("not an image (unrecognised file format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"corrupt or truncated image: {exc}") from None
