"""General-domain encoders (values from shared/models.md)."""

from __future__ import annotations

from medprobe.encoders.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    EncoderSpec,
    Preprocessing,
    TextSide,
)
from medprobe.encoders.zoo_medical import CLIP_224, CLIP_TEXT, HF_CLIP_224

SIGLIP_TEXT = TextSide(tokenizer="sentencepiece", context_length=64, padding="max_length")
DINOV2 = Preprocessing(
    image_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD, backend="transformers"
)


def _siglip(size: int) -> Preprocessing:
    # Bicubic squash: open_clip's SigLIP preprocess (_slpcfg) and transformers'
    # SiglipImageProcessor default (resample=3); the full check at load compares with the repo's.
    return Preprocessing(
        image_size=size,
        resize_mode="squash",
        interpolation="bicubic",
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
        backend="transformers",
    )


def _openai_clip(name: str, hub_id: str, dim: int, size: int, notes: str) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        library="transformers",
        architecture="CLIPModel",
        hub_id=hub_id,
        domain="general",
        subdomain="web image-text",
        embed_dim=dim,
        embedding="projected",
        preprocessing=Preprocessing(image_size=size, backend="transformers"),
        text=CLIP_TEXT,
        license="MIT",
        notes=f"OpenAI CLIP {notes}, WIT-400M.",
    )


def _laion(name: str, hub_id: str, dim: int, pre: Preprocessing, notes: str) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        library="open_clip",
        architecture=hub_id.split("/")[1],
        hub_id=hub_id,
        domain="general",
        subdomain="web image-text",
        embed_dim=dim,
        embedding="projected",
        preprocessing=pre,
        text=CLIP_TEXT,
        license="MIT",
        notes=notes,
    )


def _dinov2(size: str, dim: int) -> EncoderSpec:
    return EncoderSpec(
        name=f"dinov2-{size}",
        library="transformers",
        architecture="Dinov2Model",
        hub_id=f"facebook/dinov2-{size}",
        domain="general",
        subdomain="self-supervised images",
        embed_dim=dim,
        embedding="cls",
        preprocessing=DINOV2,
        license="Apache-2.0",
        notes=f"DINOv2 ViT-{size[0].upper()}/14 (LVD-142M); vision only, CLS token.",
    )


def _llm2clip(
    name: str, hub_id: str, dim: int, size: int, revision: str | None = None, where: str = ""
) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        library="transformers",
        architecture="LLM2CLIP (remote code)",
        hub_id=hub_id,
        revision=revision,
        domain="general",
        subdomain="web image-text (LLM text encoder)",
        embed_dim=dim,
        embedding="projected",
        preprocessing=Preprocessing(image_size=size, backend="transformers"),
        text=TextSide(
            tokenizer="microsoft/LLM2CLIP-Llama-3-8B-Instruct-CC-Finetuned", context_length=512
        ),
        license="Apache-2.0",
        trust_remote_code=True,
        notes=(
            "CLIP image tower post-trained with an 8B LLM text encoder. Image features need only "
            "the image tower; the LLM is loaded only for text analyses (llm2vec)."
            + (f" Revision pinned from {where}." if revision else " No public pinned revision.")
        ),
        options={
            "text_llm": "microsoft/LLM2CLIP-Llama-3-8B-Instruct-CC-Finetuned",
            "text_llm_base": "meta-llama/Meta-Llama-3-8B-Instruct",
        },
    )


GENERAL: tuple[EncoderSpec, ...] = (
    _openai_clip("clip-vit-b32", "openai/clip-vit-base-patch32", 512, 224, "ViT-B/32"),
    _openai_clip("clip-vit-b16", "openai/clip-vit-base-patch16", 512, 224, "ViT-B/16"),
    _openai_clip("clip-vit-l14", "openai/clip-vit-large-patch14", 768, 224, "ViT-L/14"),
    _openai_clip(
        "clip-vit-l14-336", "openai/clip-vit-large-patch14-336", 768, 336, "ViT-L/14 at 336 px"
    ),
    _laion(
        "laion-vit-b32",
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        512,
        CLIP_224,
        "OpenCLIP ViT-B/32 on LAION-2B.",
    ),
    _laion(
        "laion-vit-b16",
        "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
        512,
        CLIP_224,
        "OpenCLIP ViT-B/16 on LAION-2B.",
    ),
    _laion(
        "laion-vit-l14",
        "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
        768,
        Preprocessing(image_size=224, mean=INCEPTION_MEAN, std=INCEPTION_STD),
        "OpenCLIP ViT-L/14 on LAION-2B; this checkpoint uses INCEPTION (0.5) mean/std.",
    ),
    _laion(
        "datacomp-vit-b16",
        "laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K",
        512,
        CLIP_224,
        "OpenCLIP ViT-B/16 on DataComp-1B.",
    ),
    EncoderSpec(
        name="eva02-clip-b16",
        library="open_clip",
        architecture="EVA02-B-16",
        hub_id="timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k",
        domain="general",
        subdomain="web image-text",
        embed_dim=512,
        embedding="projected",
        preprocessing=CLIP_224,
        text=CLIP_TEXT,
        license="MIT",
        notes="EVA02-CLIP B/16 (Merged-2B), open_clip's timm-converted checkpoint.",
    ),
    EncoderSpec(
        name="siglip-b16-224",
        aliases=("siglip",),
        library="transformers",
        architecture="SiglipModel",
        hub_id="google/siglip-base-patch16-224",
        domain="general",
        subdomain="web image-text",
        embed_dim=768,
        embedding="projected",
        preprocessing=_siglip(224),
        text=SIGLIP_TEXT,
        license="Apache-2.0",
        notes="SigLIP B/16 (WebLI); sigmoid loss.",
    ),
    EncoderSpec(
        name="siglip-so400m-384",
        library="transformers",
        architecture="SiglipModel",
        hub_id="google/siglip-so400m-patch14-384",
        domain="general",
        subdomain="web image-text",
        embed_dim=1152,
        embedding="projected",
        preprocessing=_siglip(384),
        text=SIGLIP_TEXT,
        license="Apache-2.0",
        notes="SigLIP shape-optimised 400M at 384 px (WebLI).",
    ),
    EncoderSpec(
        name="siglip2-b16-224",
        aliases=("siglip2",),
        library="transformers",
        architecture="SiglipModel",
        hub_id="google/siglip2-base-patch16-224",
        domain="general",
        subdomain="web image-text",
        embed_dim=768,
        embedding="projected",
        preprocessing=_siglip(224),
        text=TextSide(tokenizer="gemma", context_length=64, padding="max_length"),
        license="Apache-2.0",
        notes="SigLIP2 B/16 FixRes (multilingual WebLI, Gemma tokenizer).",
    ),
    _dinov2("small", 384),
    _dinov2("base", 768),
    _dinov2("large", 1024),
    _llm2clip(
        "llm2clip-openai-l14-336",
        "microsoft/LLM2CLIP-Openai-L-14-336",
        1280,
        336,
        revision="92512331f393a003c3d98404677f991c188162c9",
        where=(
            "a public repository that vendors this model's remote code for transformers 5 "
            "('sources vendored from microsoft/LLM2CLIP-Openai-L-14-336, revision 9251233...')"
        ),
    ),
    _llm2clip("llm2clip-openai-b16", "microsoft/LLM2CLIP-Openai-B-16", 1280, 224),
    EncoderSpec(
        name="tinyclip-8m",
        library="transformers",
        architecture="CLIPModel",
        hub_id="wkcn/TinyCLIP-ViT-8M-16-Text-3M-YFCC15M",
        revision="a2a8c6eaa2549ad66eb7c31b85022bf58273a26c",
        domain="general",
        subdomain="web image-text",
        embed_dim=512,
        embedding="projected",
        preprocessing=HF_CLIP_224,
        text=CLIP_TEXT,
        license="MIT",
        notes="The smallest real CLIP checkpoint (ViT-8M/16, YFCC-15M): fast on a CPU.",
    ),
)
