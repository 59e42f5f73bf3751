"""DICOM -> RGB image through pydicom's own LUT pipeline: modality LUT (rescale), VOI LUT or
window (LINEAR, LINEAR_EXACT, SIGMOID), MONOCHROME1 inversion, any bit depth."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from PIL import Image

from medprobe.datasets.pixels import to_uint8
from medprobe.errors import BadImageError


def _voi_output_range(dataset) -> tuple[float, float]:
    """The output range of the VOI transform pydicom applies (PS3.3 C.11.2): a VOI LUT's own
    bit depth, else the window's range, which depends on the stored bits and the rescale."""
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if dataset.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(dataset.PixelRepresentation) == 0:
        low, high = 0.0, float(2 ** int(dataset.BitsStored) - 1)
    else:
        low, high = (
            -float(2 ** (int(dataset.BitsStored) - 1)),
            float(2 ** (int(dataset.BitsStored) - 1) - 1),
        )
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def dicom_to_array(dataset, window: tuple[float, float] | None = None) -> np.ndarray:
    """Pixel data as uint8 ``[H, W]`` or ``[H, W, 3]``.

    In the order the standard defines: the modality LUT (``apply_modality_lut``: rescale
    slope/intercept or a Modality LUT Sequence), then the VOI transform (``apply_voi_lut``: the
    file's VOI LUT Sequence, else its first window with its VOI LUT function; ``window`` =
    (centre, width) overrides both), mapped from the transform's output range to 0..255;
    without any VOI information, the full range of the values. MONOCHROME1 is inverted so that
    higher always means brighter. Multi-frame files give their middle frame.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    pixels = dataset.pixel_array
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    if frames > 1:
        pixels = pixels[frames // 2]
    photometric = str(getattr(dataset, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in {"MONOCHROME1", "MONOCHROME2"}:
        if photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        return to_uint8(pixels) if pixels.dtype != np.uint8 else pixels
    if window is not None:  # the user's window replaces the file's VOI information
        dataset = copy.deepcopy(dataset)
        for keyword in ("VOILUTSequence", "VOILUTFunction"):
            if keyword in dataset:
                delattr(dataset, keyword)
        dataset.WindowCenter, dataset.WindowWidth = float(window[0]), float(window[1])
    values = apply_modality_lut(pixels, dataset)
    if "VOILUTSequence" in dataset or ("WindowCenter" in dataset and "WindowWidth" in dataset):
        shown = apply_voi_lut(values, dataset).astype(np.float64)
        low, high = _voi_output_range(dataset)
        scaled = (shown - low) / max(high - low, 1e-12)
        out = np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8)
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
    except (OSError, ValueError, RuntimeError, NotImplementedError, IndexError) as exc:
        raise BadImageError(f"unreadable DICOM pixel data: {exc}") from None
    return Image.fromarray(array).convert("RGB")
