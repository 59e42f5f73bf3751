"""Every zoo spec sees exactly the pixels its own library feeds it (issue 23).

For each spec, our two-step preprocessing (``geometry`` -> uint8, then ``normalize``, as the
extraction engine runs it) is compared on real images from ../shared/data with the library's
own eval transform built from the same config: open_clip ``image_transform``, timm
``create_transform``, the transformers image processor loaded back with ``AutoImageProcessor``
(whose attributes our resolver must also read back to the spec), hi-ml's chest X-ray transform,
CONCH's ``image_transform``, and the transforms in FLAIR's, MedCLIP's and KEEP's own code.
Exact for timm / open_clip-family / torchvision transforms; within one grey level for the HF
processors (our geometry runs the processor's own uint8 resize; only float rounding is left) and
FLAIR (its resize runs on float tensors, ours on uint8).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from medprobe.encoders import list_specs
from medprobe.encoders.shipped import _disagreements, shipped_preprocessing
from medprobe.encoders.transforms import build_geometry, normalize

_OPEN_CLIP_MODE = {"resize_center_crop": "shortest", "squash": "squash", "pad": "longest"}
_INTERP = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}
_PIL = {"bicubic": 3, "bilinear": 2, "nearest": 0}


@pytest.fixture(scope="module")
def real_images(shared_data):
    root = shared_data / "medsamples"
    picks = [
        ("ham10000_600x450", 2),
        ("odir_fundus_400", 1),
        ("busi_256", 1),
        ("kermany_pediatric_cxr_224", 1),
        ("lc25000_lung_histopathology_224", 1),
    ]
    images = []
    for folder, n in picks:
        files = sorted(p for p in (root / folder).rglob("*") if p.is_file() and p.suffix != ".md")
        images += [Image.open(f).convert("RGB") for f in files[:n]]
    return images


def _ours(pre, image):
    return normalize(build_geometry(pre)(image)[None], pre)[0]


def _open_clip(spec, tmp_path):
    import open_clip

    pre = spec.preprocessing
    return "open_clip image_transform", open_clip.image_transform(
        pre.image_size,
        is_train=False,
        mean=pre.mean,
        std=pre.std,
        resize_mode=_OPEN_CLIP_MODE[pre.resize_mode],
        interpolation=pre.interpolation,
    )


def _timm(spec, tmp_path):
    from timm.data import create_transform

    pre = spec.preprocessing
    resize = pre.resize_size or pre.image_size
    return "timm create_transform", create_transform(
        input_size=(3, pre.image_size, pre.image_size),
        interpolation=pre.interpolation,
        mean=pre.mean,
        std=pre.std,
        crop_pct=pre.image_size / (resize + 0.5),  # floor(size / crop_pct) == resize
        crop_mode="squash" if pre.resize_mode == "squash" else "center",
    )


def _hf(spec, tmp_path):
    from transformers import (
        AutoImageProcessor,
        BitImageProcessor,
        CLIPImageProcessor,
        SiglipImageProcessor,
    )

    pre = spec.preprocessing
    common = {"resample": _PIL[pre.interpolation], "image_mean": pre.mean, "image_std": pre.std}
    if pre.resize_mode == "squash":
        processor = SiglipImageProcessor(size={"height": pre.image_size, "width": pre.image_size})
    else:
        kind = BitImageProcessor if spec.architecture == "Dinov2Model" else CLIPImageProcessor
        processor = kind(
            size={"shortest_edge": pre.resize_size or pre.image_size},
            crop_size={"height": pre.image_size, "width": pre.image_size},
            do_center_crop=True,
        )
    for key, value in common.items():
        setattr(processor, key, value)
    folder = tmp_path / spec.name
    processor.save_pretrained(folder)
    # Our resolver reads the library's processor back to exactly the spec's preprocessing.
    assert _disagreements(pre, shipped_preprocessing(folder)) == []
    loaded = AutoImageProcessor.from_pretrained(folder)
    return (
        f"transformers {type(loaded).__name__}",
        lambda image: loaded(images=image, return_tensors="pt")["pixel_values"][0],
    )


def _hi_ml(spec, tmp_path):
    from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference

    pre = spec.preprocessing
    transform = create_chest_xray_transform_for_inference(pre.resize_size, pre.image_size)
    return "hi-ml create_chest_xray_transform_for_inference", lambda im: transform(im.convert("L"))


def _conch(spec, tmp_path):
    from conch.open_clip_custom.transform import image_transform

    pre = spec.preprocessing
    return "conch image_transform", image_transform(pre.image_size, mean=pre.mean, std=pre.std)


def _flair(image):
    """FLAIR's own FLAIRModel.preprocess_image (flair/modeling/model.py), on a PIL image."""
    array = np.float32(np.asarray(image)) / 255
    tensor = torch.tensor(np.transpose(array, (2, 0, 1)))[None]
    scale = max(tensor.shape[-2:]) / 512
    size = (int(tensor.shape[-2] / scale), int(tensor.shape[-1] / scale))
    tensor = T.Resize(size, antialias=True)(tensor)
    pad = (0, 512 - tensor.shape[-1], 0, 512 - tensor.shape[-2], 0, 0)
    return torch.nn.functional.pad(tensor, pad)[0]


def _custom(spec, tmp_path):
    pre = spec.preprocessing
    if spec.name == "flair":
        return "FLAIR preprocess_image", _flair
    if spec.name.startswith("medclip"):
        transform = T.Compose(
            [T.Resize((224, 224)), T.ToTensor(), T.Normalize([pre.mean[0]], [pre.std[0]])]
        )
        return "MedCLIP dataset transform", lambda im: transform(im.convert("L")).repeat(3, 1, 1)
    if spec.name == "keep":  # the KEEP README's torchvision transform
        transform = T.Compose(
            [
                T.Resize(224, interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop((224, 224)),
                T.ToTensor(),
                T.Normalize(mean=pre.mean, std=pre.std),
            ]
        )
        return "KEEP README transform", transform
    return _open_clip(spec, tmp_path)  # PMC-CLIP: open_clip's transform in its own repo


def _baseline(spec, tmp_path):
    pre = spec.preprocessing
    return "torchvision Resize + ToTensor", T.Compose(
        [
            T.Resize((pre.image_size, pre.image_size), interpolation=_INTERP[pre.interpolation]),
            T.ToTensor(),
        ]
    )


_REFERENCES = {
    "open_clip": _open_clip,
    "timm": _timm,
    "transformers": _hf,
    "hi-ml-multimodal": _hi_ml,
    "conch": _conch,
    "custom": _custom,
    "baseline": _baseline,
}


def compare(spec, images, tmp_path) -> tuple[str, float]:
    """What ``spec``'s preprocessing is compared with, and the largest difference seen."""
    reference = _REFERENCES[spec.library]
    what, transform = reference(spec, tmp_path)
    worst = 0.0
    for image in images:
        ours, theirs = _ours(spec.preprocessing, image), transform(image)
        assert ours.shape == theirs.shape, (spec.name, ours.shape, theirs.shape)
        worst = max(worst, (ours - theirs).abs().max().item())
    return what, worst


@pytest.mark.parametrize("spec", list_specs(), ids=lambda s: s.name)
def test_our_tensors_equal_the_librarys_own_preprocessing(spec, real_images, tmp_path):
    what, worst = compare(spec, real_images, tmp_path)
    grey = 1 / 255 / min(spec.preprocessing.std)
    if spec.library == "transformers" or spec.name == "flair":
        assert worst <= grey + 1e-6, (spec.name, what, worst)
    else:
        assert worst <= 1e-6, (spec.name, what, worst)


def test_open_clip_specs_carry_open_clips_own_preprocessing():
    """Where open_clip's pretrained table knows a spec's hub repository, its preprocess config
    (from the library itself) is the spec's."""
    import open_clip

    table = {}
    for arch, tag in open_clip.list_pretrained():
        cfg = open_clip.get_pretrained_cfg(arch, tag)
        if cfg.get("hf_hub"):
            table[cfg["hf_hub"].strip("/").split("/open_clip")[0]] = cfg
    checked = 0
    for spec in list_specs():
        cfg = table.get(spec.hub_id or "")
        if cfg is None or spec.library != "open_clip":
            continue
        pre = spec.preprocessing
        assert tuple(cfg.get("mean", pre.mean)) == pytest.approx(pre.mean), spec.name
        assert tuple(cfg.get("std", pre.std)) == pytest.approx(pre.std), spec.name
        assert cfg.get("interpolation", "bicubic") == pre.interpolation, spec.name
        assert _OPEN_CLIP_MODE[pre.resize_mode] == cfg.get("resize_mode", "shortest"), spec.name
        checked += 1
    assert checked >= 3


def test_timm_local_folders_resize_as_timm_does(tmp_path):
    """timm floors size / crop_pct (a 224 ViT with crop_pct 0.9 resizes to 248, not 249) and
    squashes with crop_mode='squash'."""
    import timm

    for crop_mode, expected_mode in (("center", "resize_center_crop"), ("squash", "squash")):
        model = timm.create_model("vit_tiny_patch16_224", num_classes=0)
        model.pretrained_cfg = {**model.pretrained_cfg, "crop_pct": 0.9, "crop_mode": crop_mode}
        folder = tmp_path / crop_mode
        timm.models.save_for_hf(model, str(folder), safe_serialization=True)
        pre = shipped_preprocessing(folder)
        assert (pre.resize_size, pre.resize_mode) == (math.floor(224 / 0.9), expected_mode)


def test_hf_rescale_and_normalize_switches_are_honoured(tmp_path, real_images):
    from transformers import AutoImageProcessor, CLIPImageProcessor

    for do_rescale, do_normalize in ((True, False), (False, False), (False, True)):
        folder = tmp_path / f"{do_rescale}-{do_normalize}"
        CLIPImageProcessor(do_rescale=do_rescale, do_normalize=do_normalize).save_pretrained(folder)
        pre = shipped_preprocessing(folder)
        processor = AutoImageProcessor.from_pretrained(folder)
        for image in real_images[:2]:
            theirs = processor(images=image, return_tensors="pt")["pixel_values"][0]
            diff = (_ours(pre, image) - theirs).abs().max().item()
            assert diff <= 1.01 / 255 / min(pre.std), (do_rescale, do_normalize, diff)
