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


def build_transform(pre: Preprocessing) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> normalised float32 tensor [3, S, S], exactly as ``pre`` says."""
    size = pre.image_size
    interpolation = _INTERPOLATION[pre.interpolation]
    geometry: list[Callable] = []
    if pre.resize_mode == "resize_center_crop":
        resize = pre.resize_size or size
        geometry = [T.Resize(resize, interpolation=interpolation), T.CenterCrop(size)]
    elif pre.resize_mode == "squash":
        geometry = [T.Resize((size, size), interpolation=interpolation)]
    else:  # pad: keep the whole image and its aspect ratio
        geometry = [_pad_to_square, T.Resize((size, size), interpolation=interpolation)]
    return T.Compose(
        [
            *geometry,
            T.ToImage(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(pre.mean), std=list(pre.std)),
        ]
    )
