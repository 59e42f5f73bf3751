"""DICOM -> RGB image: modality LUT (rescale), VOI windowing, MONOCHROME1 inversion, 16-bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medprobe.datasets.pixels import to_uint8
from medprobe.errors import BadImageError


def dicom_to_array(dataset, window: tuple[float, float] | None = None) -> np.ndarray:
    """Pixel data as uint8 ``[H, W]`` or ``[H, W, 3]``.

    Steps, in the order the standard defines them: rescale slope/intercept (modality LUT) ->
    window centre/width (``window`` if given, else the file's first window, else the full range)
    -> MONOCHROME1 inverted so that higher always means brighter. Multi-frame files give their
    middle frame.
    """
    from pydicom.pixels import apply_modality_lut

    pixels = dataset.pixel_array
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        return to_uint8(pixels) if pixels.dtype != np.uint8 else pixels
    values = apply_modality_lut(pixels, dataset).astype(np.float64)
    if window is None and "WindowCenter" in dataset and "WindowWidth" in dataset:
        centre, width = dataset.WindowCenter, dataset.WindowWidth
        centre = float(centre[0] if hasattr(centre, "__len__") else centre)
        width = float(width[0] if hasattr(width, "__len__") else width)
        window = (centre, width)
    if window is not None:
        centre, width = window
        low, high = centre - width / 2, centre + width / 2
        out = np.round(np.clip((values - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8)
    else:
        out = to_uint8(values)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def read_dicom(path: str | Path, window: tuple[float, float] | None = None) -> Image.Image:
    """A DICOM file as an RGB PIL image (see :func:`dicom_to_array`)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(str(path))
        array = dicom_to_array(dataset, window)
    except InvalidDicomError:
        raise BadImageError("not a valid DICOM file") from None
    except (AttributeError, KeyError):
        raise BadImageError("DICOM file has no pixel data") from None
    except (OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise BadImageError(f"unreadable DICOM pixel data: {exc}") from None
    return Image.fromarray(array).convert("RGB")
