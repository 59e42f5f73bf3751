"""Remove detected text and marks from images: the "what if they were not there" counterfactual."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from PIL import Image

from medprobe.audit.boxes import TextBox
from medprobe.audit.detect import TextDetections
from medprobe.datasets.base import Record

MaskMode = Literal["fill", "inpaint"]


class TextMask:
    """An image transform (the extractor's overlay protocol) that erases detected boxes.

    ``fill`` paints each box, grown by ``pad`` x its shorter side, with the median colour of
    the ring around it; ``inpaint`` fills it with OpenCV's Telea inpainting. ``kinds`` says
    which boxes go: words and (by default) non-word marks. Images without such boxes are
    returned unchanged, so their features do not move.
    """

    def __init__(
        self,
        detections: TextDetections,
        mode: MaskMode = "fill",
        pad: float = 0.3,
        kinds: tuple[str, ...] = ("word", "mark"),
    ):
        if mode not in ("fill", "inpaint"):
            raise ValueError(f"mask mode must be 'fill' or 'inpaint', not {mode!r}")
        self.detections, self.mode, self.pad, self.kinds = detections, mode, pad, tuple(kinds)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "text-mask",
            "mode": self.mode,
            "pad": self.pad,
            "kinds": list(self.kinds),
            "detections": self.detections.digest(),
        }

    def boxes_of(self, image_id: str) -> list[TextBox]:
        """The boxes this mask erases in one image."""
        return [b for b in self.detections.boxes_of(image_id) if b.kind in self.kinds]

    def __call__(self, image: Image.Image, record: Record, index: int) -> Image.Image:
        boxes = self.boxes_of(record.id)
        return self.apply(image, boxes) if boxes else image

    def _rect(self, box: TextBox, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        grow = max(1, round(self.pad * min(box.height, box.width)))
        return (
            max(0, box.y - grow),
            min(shape[0], box.y + box.height + grow),
            max(0, box.x - grow),
            min(shape[1], box.x + box.width + grow),
        )

    def apply(self, image: Image.Image, boxes: list[TextBox]) -> Image.Image:
        """``image`` with ``boxes`` erased."""
        pixels = np.array(image.convert("RGB"))
        if self.mode == "inpaint":
            import cv2

            mask = np.zeros(pixels.shape[:2], np.uint8)
            for box in boxes:
                y0, y1, x0, x1 = self._rect(box, pixels.shape)
                mask[y0:y1, x0:x1] = 255
            radius = max(3, max(min(b.height, b.width) for b in boxes) // 2)
            return Image.fromarray(cv2.inpaint(pixels, mask, radius, cv2.INPAINT_TELEA))
        for box in boxes:
            y0, y1, x0, x1 = self._rect(box, pixels.shape)
            ring = max(2, min(box.height, box.width) // 2)
            outer = pixels[max(0, y0 - ring) : y1 + ring, max(0, x0 - ring) : x1 + ring].reshape(
                -1, 3
            )
            inner = np.zeros(pixels.shape[:2], bool)
            inner[y0:y1, x0:x1] = True
            around = inner[max(0, y0 - ring) : y1 + ring, max(0, x0 - ring) : x1 + ring].ravel()
            colour = np.median(outer[~around], axis=0) if (~around).any() else outer.mean(0)
            pixels[y0:y1, x0:x1] = colour.astype(np.uint8)
        return Image.fromarray(pixels)
