"""Turn a :class:`Preprocessing` spec into the image -> tensor transform it describes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


class _Grey:
    """8-bit grey (PIL ``L``), repeated on three channels."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image.convert("L").convert("RGB")


class _ProcessorGeometry:
    """The transformers image processor's own resize and crop, rescaling and normalisation off:
    it returns the uint8 tensor that the processor would go on to scale (built lazily in each
    data-loading worker; pickles as its spec)."""

    def __init__(self, pre: Preprocessing) -> None:
        self.pre, self._processor = pre, None

    def __getstate__(self) -> dict:
        return {"pre": self.pre, "_processor": None}

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self._processor is None:
            from transformers import CLIPImageProcessor

            pre = self.pre
            resize = pre.resize_size or pre.image_size
            size = (
                {"shortest_edge": resize}
                if pre.resize_mode == "resize_center_crop"
                else {"height": resize, "width": resize}
            )
            self._processor = CLIPImageProcessor(
                size=size,
                crop_size={"height": pre.image_size, "width": pre.image_size},
                do_center_crop=resize != pre.image_size or pre.resize_mode != "squash",
                resample=_PIL[pre.interpolation],
                do_rescale=False,
                do_normalize=False,
            )
        return self._processor(images=image, return_tensors="pt")["pixel_values"][0]


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
    first: list[Callable] = [_Grey()] if pre.grey else []
    if pre.backend == "transformers":
        if pre.resize_mode not in ("resize_center_crop", "squash"):
            raise ValueError(f"the transformers backend cannot {pre.resize_mode}")
        return T.Compose([*first, _ProcessorGeometry(pre)])
    geometry: list[Callable] = []
    if pre.resize_mode == "resize_center_crop":
        resize = pre.resize_size or size
        geometry = [T.Resize(resize, interpolation=interpolation), T.CenterCrop(size)]
    elif pre.resize_mode == "squash":  # timm's squash: both sides to resize_size, then crop
        resize = pre.resize_size or size
        geometry = [T.Resize((resize, resize), interpolation=interpolation)]
        if resize != size:
            geometry.append(T.CenterCrop(size))
    elif pre.resize_mode == "pad_bottom_right":
        geometry = [_PadBottomRight(size, _PIL[pre.interpolation])]
    else:  # pad: keep the whole image and its aspect ratio
        geometry = [_pad_to_square, T.Resize((size, size), interpolation=interpolation)]
    return T.Compose([*first, *geometry, T.ToImage()])


#: The memory layout encoders take batches in: channels-last, the layout oneDNN and cuDNN
#: convolve fastest in (part of a torch encoder's identity: another layout picks other
#: convolution kernels, whose low bits differ).
LAYOUT = torch.channels_last


def stack(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """uint8 ``[3, S, S]`` images from :func:`build_geometry` -> one ``[N, 3, S, S]`` batch in
    :data:`LAYOUT` (torchvision's PIL conversion is already channels-last in memory, so each
    image is one contiguous copy and the model needs no layout conversion)."""
    first = images[0]
    batch = torch.empty((len(images), *first.shape), dtype=first.dtype, memory_format=LAYOUT)
    for row, image in zip(batch, images, strict=True):
        row.copy_(image)
    return batch


def normalize(batch: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """uint8 ``[N, 3, S, S]`` -> float32 scaled to [0, 1], minus mean, over std (per channel),
    in the batch's layout: one conversion and an in-place multiply-subtract (a third of the
    time of the textbook ``(x / 255 - mean) / std``; within 5e-7 of it)."""
    mean = torch.tensor(pre.mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    # copy=True: a float batch (the transformers geometry's) is never changed in place
    return batch.to(torch.float32, copy=True).mul_(1 / (255.0 * std)).sub_(mean / std)
