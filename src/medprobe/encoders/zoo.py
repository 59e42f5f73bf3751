"""The encoder zoo: declarative specs, registered by name (like open_clip's pretrained table)."""

from __future__ import annotations

from medprobe.encoders.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_NORM_MEAN,
    NO_NORM_STD,
    OPENAI_MEAN,
    OPENAI_STD,
    EncoderSpec,
    Preprocessing,
)

# Length of the handcrafted descriptor at 128 px (HSV 8x4x4 + 6 moments + LBP 10 + 18 + HOG
# 3x3 blocks x 4 cells x 9 orientations); tests check it against the encoder's real output.
HANDCRAFTED_DIM_128 = 128 + 6 + 10 + 18 + 9 * 4 * 9

_RAW_32 = Preprocessing(
    image_size=32,
    resize_mode="squash",
    interpolation="bilinear",
    mean=NO_NORM_MEAN,
    std=NO_NORM_STD,
)
_RAW_128 = _RAW_32.model_copy(update={"image_size": 128})

BASELINES: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="pixels",
        library="baseline",
        architecture="pixels",
        domain="baseline",
        subdomain="control",
        embed_dim=64,
        embedding="pixels",
        preprocessing=_RAW_32,
        license="MIT",
        notes="32x32 RGB pixels, PCA to 64 components fitted on the training split.",
        options={"n_components": 64},
    ),
    EncoderSpec(
        name="handcrafted",
        aliases=("classical",),
        library="baseline",
        architecture="handcrafted",
        domain="baseline",
        subdomain="control",
        embed_dim=HANDCRAFTED_DIM_128,
        embedding="handcrafted",
        preprocessing=_RAW_128,
        license="MIT",
        notes="HSV colour histogram + RGB moments + uniform LBP (r=1,3) + HOG (scikit-image).",
    ),
    EncoderSpec(
        name="random-vit",
        aliases=("random-vit-s16",),
        library="timm",
        architecture="vit_small_patch16_224",
        domain="baseline",
        subdomain="control",
        embed_dim=512,
        embedding="projected",
        preprocessing=Preprocessing(image_size=224, mean=OPENAI_MEAN, std=OPENAI_STD),
        license="Apache-2.0",
        notes=(
            "Randomly initialised ViT-S/16 (timm, seed 0) with a 512-d linear projection: the "
            "'random features' control that shows what pretraining adds. ViT-S keeps the demo "
            "fast on a CPU; random-vit-b16 is the ViT-B/16 size of most VLM image towers."
        ),
        options={"seed": 0, "random_init": True},
    ),
    EncoderSpec(
        name="random-vit-b16",
        library="timm",
        architecture="vit_base_patch16_224",
        domain="baseline",
        subdomain="control",
        embed_dim=512,
        embedding="projected",
        preprocessing=Preprocessing(image_size=224, mean=OPENAI_MEAN, std=OPENAI_STD),
        license="Apache-2.0",
        notes="Randomly initialised ViT-B/16 (timm, seed 0) with a 512-d linear projection.",
        options={"seed": 0, "random_init": True},
    ),
    EncoderSpec(
        name="random-resnet50",
        library="timm",
        architecture="resnet50",
        domain="baseline",
        subdomain="control",
        embed_dim=2048,
        embedding="pooled",
        preprocessing=Preprocessing(image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        license="Apache-2.0",
        notes="Randomly initialised ResNet-50 (timm, seed 0), global-average-pooled features.",
        options={"seed": 0, "random_init": True},
    ),
)
