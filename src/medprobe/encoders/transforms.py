"""Turn a :class:`Preprocessing` spec into the image -> tensor transform it describes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image, ImageOps
from torchvision.transforms import v2 as T

from medprobe.encoders.spec import Preprocessing

_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}


def _pad_to_square(image: Image.Image) -> Image.Image:
    side = max(image.size)
    return ImageOps.pad(image, (side, side), color=(0, 0, 0), centering=(0.5, 0.5))


class _PadBottomRight:
    """Longer side to ``size`` (aspect kept, ``int`` of the scaled sides as FLAIR computes them),
    then black padding at the bottom and right to a ``size`` x ``size`` canvas."""

    def __init__(self, size: int, interpolation: Image.Resampling) -> None:
        self.size, self.interpolation = size, interpolation

    def __call__(self, image: Image.Image) -> Image.Image:
        scale = max(image.size) / self.size
        w, h = int(image.width / scale), int(image.height / scale)
        canvas = Image.new("RGB", (self.size, self.size))
        canvas.paste(image.resize((w, h), self.interpolation, reducing_gap=None), (0, 0))
        return canvas


_PIL = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def build_geometry(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> uint8 tensor [3, S, S]: the resize/crop/pad part of ``pre``.

    Data-loading workers run this; images cross process boundaries as uint8 (4x smaller than
    float32) and are normalised batch-wise where the model runs (see :func:`normalize`).
    """
    size = pre.image_size
    interpolation = _INTERPOLATION[pre.interpolation]
    geometry: list[Callable] = []
    if pre.resize_mode == "resize_center_crop":
        resize = pre.resize_size or size
        geometry = [T.Resize(resize, interpolation=interpolation), T.CenterCrop(size)]
    elif pre.resize_mode == "squash":
        geometry = [T.Resize((size, size), interpolation=interpolation)]
    elif pre.resize_mode == "pad_bottom_right":
        geometry = [_PadBottomRight(size, _PIL[pre.interpolation])]
    else:  # pad: keep the whole image and its aspect ratio
        geometry = [_pad_to_square, T.Resize((size, size), interpolation=interpolation)]
    return T.Compose([*geometry, T.ToImage()])


def normalize(batch: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """uint8 ``[N, 3, S, S]`` -> float32 scaled to [0, 1], minus mean, over std (per channel)."""
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    return (batch.to(torch.float32) / 255.0 - mean) / std
