"""``rapidocr``: PP-OCR text localisation (DB) and recognition (SVTR), ONNX on onnxruntime.

The weights ship inside the ``rapidocr`` wheel (PP-OCRv6 small detector and recogniser; its
recogniser reads Latin and Chinese script), so nothing is downloaded: the model files are
named explicitly and a missing file is an error, never a download.
"""

from __future__ import annotations

import functools
import string
from importlib import metadata
from pathlib import Path

import numpy as np
from pydantic import Field

from medprobe.audit.detector import LearnedDetector
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

_INSTALL = "install it with `pip install rapidocr onnxruntime` (medprobe's own dependencies)"
_DET, _REC = "PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx"


def _model_dir() -> Path:
    try:
        import rapidocr
    except ImportError:
        raise MedprobeError(f"the rapidocr text detector is not installed: {_INSTALL}") from None
    folder = Path(rapidocr.__file__).parent / "models"
    missing = [name for name in (_DET, _REC) if not (folder / name).is_file()]
    if missing:
        raise MedprobeError(
            f"rapidocr's bundled weights {', '.join(missing)} are missing from {folder}: "
            f"reinstall it ({_INSTALL})"
        )
    return folder


@functools.cache
def _versions() -> dict[str, str]:
    folder = _model_dir()
    return {
        "rapidocr": metadata.version("rapidocr"),
        "onnxruntime": metadata.version("onnxruntime"),
        # the weights by content, so a re-release under the same version is a new key
        "weights": fingerprint(_DET, _REC, *((folder / n).read_bytes() for n in (_DET, _REC))),
    }


@functools.cache
def _engine(threads: int, threshold: float, box_threshold: float, unclip: float, latin: bool):
    """One RapidOCR engine per setting (its ONNX sessions are thread-safe and reused)."""
    from rapidocr import RapidOCR

    folder = _model_dir()
    engine = RapidOCR(
        params={
            "Global.log_level": "error",
            "Global.use_preprocess_img": False,  # the pipeline scales the image itself
            "Global.use_vertical_padding": False,
            "Det.model_path": str(folder / _DET),
            "Det.limit_type": "max",
            "Det.limit_side_len": 4096,  # no second resize
            "Det.thresh": threshold,
            "Det.box_thresh": box_threshold,
            "Det.unclip_ratio": unclip,
            "Rec.model_path": str(folder / _REC),
            "Rec.rec_img_shape": [3, 48, 48],
            "Rec.rec_batch_num": 16,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )
    # rapidocr is pinned: its recogniser is loaded the way RapidOCR.__call__ loads it, so
    # crops can be read in one batch
    recogniser = engine._load_rec_model()
    if latin:
        recogniser.postprocess_op = _Alphabet(recogniser.postprocess_op, _LATIN)
    return engine, recogniser


#: what burned-in text on western scanners is written in
_LATIN = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")


class _Alphabet:
    """CTC decoding over an alphabet: the recogniser's other characters get probability 0, so
    a Latin letter in a box is read as that letter, not as the CJK character the box
    resembles ("D" in a frame is otherwise read as "回")."""

    def __init__(self, decoder, alphabet: frozenset[str]):
        self.decoder = decoder
        self.character = decoder.character
        # index 0 is CTC's blank; it always stays
        self.dropped = np.array(
            [k > 0 and ch not in alphabet for k, ch in enumerate(self.character)]
        )

    def __call__(self, preds: np.ndarray, return_word_box: bool = False, **kwargs):
        preds = np.where(self.dropped, 0.0, preds)
        return self.decoder(preds, return_word_box, **kwargs)


class RapidOCRDetector(LearnedDetector):
    """PP-OCR (rapidocr, ONNX): the default detector."""

    name = "rapidocr"
    read_height = 48  # Rec.rec_img_shape

    threshold: float = Field(0.3, ge=0, le=1, description="localiser pixel score (DB)")
    box_threshold: float = Field(0.3, ge=0, le=1, description="localiser region score")
    unclip: float = Field(1.6, gt=0, le=4, description="how far regions are grown (DB unclip)")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime threads per image")

    def versions(self) -> dict[str, str]:
        return _versions()

    def _models(self):
        return _engine(self.threads, self.threshold, self.box_threshold, self.unclip, self.latin)

    def locate(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        engine, _ = _engine(
            self.threads, self.threshold, self.box_threshold, self.unclip, self.latin
        )
        found = engine(rgb[:, :, ::-1], use_cls=False, use_rec=False)  # RapidOCR wants BGR
        if found.boxes is None:
            return []
        return [
            (np.asarray(q, float), float(s)) for q, s in zip(found.boxes, found.scores, strict=True)
        ]

    def read(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Each crop's own reading. rapidocr pads every crop of a batch to the batch's widest
        (``resize_norm_img``), and the padding changes what a narrow crop reads as (a "D"
        read 0.07 beside wide crops, 1.00 alone). Crops are batched by the width they are
        padded to when read alone, which is then the width of their batch: the readings of
        reading each alone, in fewer recogniser calls."""
        from rapidocr.ch_ppocr_rec import TextRecInput

        _, recogniser = _engine(
            self.threads, self.threshold, self.box_threshold, self.unclip, self.latin
        )
        width = [int(self.read_height * max(1.0, c.shape[1] / c.shape[0])) for c in crops]
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for padded in sorted(set(width)):
            members = [k for k, w in enumerate(width) if w == padded]
            found = recogniser(TextRecInput(img=[crops[k][:, :, ::-1] for k in members]))
            for k, text, score in zip(members, found.txts, found.scores, strict=True):
                out[k] = (str(text), float(score))
        return out
