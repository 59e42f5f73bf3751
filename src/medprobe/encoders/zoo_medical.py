"""Medical encoders (values from shared/models.md; revisions are pinned only where a commit was
verified — otherwise the snapshot commit actually used is recorded with every feature set)."""

from __future__ import annotations

from medprobe.encoders.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    NO_NORM_MEAN,
    NO_NORM_STD,
    EncoderSpec,
    Preprocessing,
    TextSide,
)

CLIP_224 = Preprocessing(image_size=224)  # OPENAI mean/std, bicubic, resize + centre crop
HF_CLIP_224 = Preprocessing(image_size=224, backend="transformers")  # CLIPImageProcessor
CLIP_TEXT = TextSide(tokenizer="openai-clip-bpe", context_length=77)
BIOMEDBERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
PUBMEDBERT_256 = TextSide(tokenizer=BIOMEDBERT, context_length=256)
CLINICALBERT = "emilyalsentzer/Bio_ClinicalBERT"
#: MedCLIP's single-channel statistics (medclip/constants.py), on all three channels.
MEDCLIP = Preprocessing(
    image_size=224,
    resize_mode="squash",
    interpolation="bilinear",
    mean=(0.5862785803043838,) * 3,
    std=(0.27950088968644304,) * 3,
    grey=True,
)
#: hi-ml's chest X-ray transform: Resize(512) (bilinear), CenterCrop, ToTensor, no mean/std.
_BIOVIL = {
    "resize_size": 512,
    "interpolation": "bilinear",
    "mean": NO_NORM_MEAN,
    "std": NO_NORM_STD,
    "grey": True,
}


def _unimed(name: str, hub_id: str, file: str, dim: int, vision: dict, size: int) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        library="open_clip",
        architecture=f"UniMed-CLIP {'ViT-B-16' if size == 224 else 'ViT-L-14-336'}-quickgelu",
        hub_id=hub_id,
        domain="medical",
        subdomain="multi-modality (X-ray, CT, MRI, ultrasound, fundus, histology)",
        embed_dim=dim,
        embedding="projected",
        preprocessing=Preprocessing(image_size=size),
        text=PUBMEDBERT_256,
        license="CC BY-NC 4.0",
        notes=(
            "UniMed-CLIP (mbzuai-oryx/UniMed-CLIP): OpenAI-style QuickGELU ViT + BiomedBERT. "
            "Trained with a fork of open_clip whose text tower is `text_encoder.*`; loaded into "
            "upstream open_clip's CustomTextCLIP with `text_encoder.` renamed to `text.`."
        ),
        options={
            "checkpoint": file,
            "files": [file],
            "extra_repos": [BIOMEDBERT],
            "key_map": {"text_encoder.": "text."},
            "model_cfg": {
                "embed_dim": dim,
                "quick_gelu": True,
                "vision_cfg": vision,
                "text_cfg": {
                    "hf_proj_type": "mlp",
                    "hf_pooler_type": "cls_last_hidden_state_pooler",
                    "context_length": 256,
                },
            },
        },
    )


def _medclip(name: str, architecture: str, extra: list[str], notes: str, url: str) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        library="custom",
        architecture=architecture,
        domain="medical",
        subdomain="chest x-ray",
        embed_dim=512,
        embedding="projected",
        preprocessing=MEDCLIP,
        text=TextSide(tokenizer=CLINICALBERT, context_length=77),
        license="unknown",
        notes=(
            f"MedCLIP (RyanWangZf/MedCLIP) {notes}, Bio_ClinicalBERT text; CheXpert + MIMIC-CXR."
            " Weights are not on the hub: unzip the release into a folder holding "
            "pytorch_model.bin and pass it as weights. Images in grey (PIL L) with MedCLIP's "
            "single-channel statistics, repeated on three channels as its forward does."
        ),
        options={"extra_repos": [CLINICALBERT, *extra], "download": url},
    )


def _biovil(name: str, arch: str, hub_id: str, rev: str, file: str, md5: str, crop: int):
    return EncoderSpec(
        name=name,
        library="hi-ml-multimodal",
        architecture=arch,
        hub_id=hub_id,
        revision=rev,
        domain="medical",
        subdomain="chest x-ray",
        embed_dim=128,
        embedding="projected",
        preprocessing=Preprocessing(image_size=crop, **_BIOVIL),
        text=TextSide(tokenizer=hub_id, context_length=512),
        license="MIT",
        notes=(
            f"{name.replace('biovil', 'BioViL')} via Microsoft's hi-ml-multimodal: ResNet-50"
            f"{' + ViT pooler' if 'multi' in arch else ''} image model, 128-d joint space, "
            f"CXR-BERT text (hi-ml's own class, no remote code). Revision {rev}, file name and "
            "MD5 are hi-ml's pinned constants (health_multimodal/image/model/pretrained.py)."
        ),
        options={"image_weights": file, "md5": md5},
    )


MEDICAL: tuple[EncoderSpec, ...] = (
    EncoderSpec(
        name="biomedclip",
        aliases=("biomedclip-pubmedbert-vit-b16",),
        library="open_clip",
        architecture="ViT-B-16 (timm) + PubMedBERT",
        hub_id="microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        domain="medical",
        subdomain="broad biomedical",
        embed_dim=512,
        embedding="projected",
        preprocessing=CLIP_224,
        text=PUBMEDBERT_256,
        license="MIT",
        notes="PMC-15M figure-caption pairs. Text config comes from a second hub repo.",
        options={"extra_repos": ["microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"]},
    ),
    EncoderSpec(
        name="pubmedclip",
        aliases=("pubmedclip-vit-b32",),
        library="transformers",
        architecture="CLIPModel",
        hub_id="flaviagiammarino/pubmed-clip-vit-base-patch32",
        domain="medical",
        subdomain="radiology",
        embed_dim=512,
        embedding="projected",
        preprocessing=HF_CLIP_224,
        text=CLIP_TEXT,
        license="MIT",
        notes="CLIP ViT-B/32 fine-tuned on ROCO radiology figures.",
    ),
    EncoderSpec(
        name="quiltnet-b32",
        library="open_clip",
        architecture="ViT-B-32",
        hub_id="wisdomik/QuiltNet-B-32",
        domain="medical",
        subdomain="pathology",
        embed_dim=512,
        embedding="projected",
        preprocessing=CLIP_224,
        text=CLIP_TEXT,
        license="MIT",
        notes="Quilt-1M histopathology videos. Config has no quick_gelu key (loads with GELU).",
    ),
    EncoderSpec(
        name="quiltnet-b16",
        library="open_clip",
        architecture="ViT-B-16",
        hub_id="wisdomik/QuiltNet-B-16",
        domain="medical",
        subdomain="pathology",
        embed_dim=512,
        embedding="projected",
        preprocessing=CLIP_224,
        text=CLIP_TEXT,
        license="MIT",
        notes="Quilt-1M histopathology videos, ViT-B/16.",
    ),
    EncoderSpec(
        name="quiltnet-b16-pmb",
        library="open_clip",
        architecture="ViT-B-16 + PubMedBERT",
        hub_id="wisdomik/QuiltNet-B-16-PMB",
        domain="medical",
        subdomain="pathology",
        embed_dim=512,
        embedding="projected",
        preprocessing=CLIP_224,
        text=PUBMEDBERT_256,
        license="MIT",
        notes="QuiltNet with a PubMedBERT text tower.",
        options={"extra_repos": ["microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"]},
    ),
    EncoderSpec(
        name="plip",
        library="transformers",
        architecture="CLIPModel",
        hub_id="vinid/plip",
        domain="medical",
        subdomain="pathology",
        embed_dim=512,
        embedding="projected",
        preprocessing=HF_CLIP_224,
        text=CLIP_TEXT,
        license="unknown",
        notes="CLIP ViT-B/32 on OpenPath (208k pathology image-text pairs from medical Twitter).",
    ),
    EncoderSpec(
        name="medsiglip-448",
        aliases=("medsiglip",),
        library="transformers",
        architecture="SiglipModel",
        hub_id="google/medsiglip-448",
        domain="medical",
        subdomain="broad biomedical",
        embed_dim=1152,
        embedding="projected",
        preprocessing=Preprocessing(
            image_size=448,
            resize_mode="squash",
            interpolation="bicubic",  # SiglipImageProcessor's default, as for every SigLIP
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            backend="transformers",
        ),
        text=TextSide(tokenizer="google/medsiglip-448", context_length=64, padding="max_length"),
        license="Health AI Developer Foundations terms (gated)",
        notes="SigLIP-400M on CXR, dermatology, ophthalmology, pathology, CT/MRI + natural images.",
        options={"gated": True},
    ),
    EncoderSpec(
        name="monet",
        library="transformers",
        architecture="CLIPModel",
        hub_id="suinleelab/monet",
        domain="medical",
        subdomain="dermatology",
        embed_dim=768,
        embedding="projected",
        preprocessing=HF_CLIP_224,
        text=CLIP_TEXT,
        license="unknown",
        notes="CLIP ViT-L/14 for dermatology concepts; uses the HF processor's OpenAI mean/std.",
    ),
    EncoderSpec(
        name="dermlip-b16",
        aliases=("dermlip",),
        library="open_clip",
        architecture="ViT-B-16",
        hub_id="redlessone/DermLIP_ViT-B-16",
        domain="medical",
        subdomain="dermatology",
        embed_dim=512,
        embedding="projected",
        preprocessing=CLIP_224,
        text=CLIP_TEXT,
        license="CC BY-NC 4.0",
        notes="Derm1M; preprocessing from the repo's open_clip_config.json is checked at load.",
    ),
    EncoderSpec(
        name="medicat-roco-l14-448",
        library="open_clip",
        architecture="ViT-L-14 @448",
        hub_id="luhuitong/CLIP-ViT-L-14-448px-MedICaT-ROCO",
        domain="medical",
        subdomain="radiology",
        embed_dim=768,
        embedding="projected",
        preprocessing=Preprocessing(image_size=448),
        text=CLIP_TEXT,
        license="Apache-2.0",
        notes="CLIP ViT-L/14 at 448 px fine-tuned on MedICaT + ROCO.",
    ),
    EncoderSpec(
        name="pmc-vit-l14",
        library="open_clip",
        architecture="ViT-L-14",
        hub_id="ryanyip7777/pmc_vit_l_14",
        domain="medical",
        subdomain="broad biomedical",
        embed_dim=768,
        embedding="projected",
        preprocessing=CLIP_224,
        text=CLIP_TEXT,
        license="unknown",
        notes="CLIP ViT-L/14 trained on PMC-OA.",
    ),
    EncoderSpec(
        name="rad-dino",
        library="transformers",
        architecture="Dinov2Model",
        hub_id="microsoft/rad-dino",
        domain="medical",
        subdomain="radiology",
        embed_dim=768,
        embedding="cls",
        preprocessing=Preprocessing(
            image_size=518,
            mean=(0.5307, 0.5307, 0.5307),
            std=(0.2583, 0.2583, 0.2583),
            backend="transformers",
        ),
        license="MIT",
        notes="DINOv2 ViT-B/14 continued on chest X-rays; vision only, CLS token.",
    ),
    EncoderSpec(
        name="uni",
        library="timm",
        architecture="vit_large_patch16_224",
        hub_id="MahmoodLab/UNI",
        domain="medical",
        subdomain="pathology",
        embed_dim=1024,
        embedding="cls",
        preprocessing=Preprocessing(image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        license="CC BY-NC-ND 4.0 (gated)",
        notes="Self-supervised (DINOv2 recipe) ViT-L/16 on 100k H&E slides; vision only.",
        options={"model_args": {"init_values": 1e-5, "dynamic_img_size": True}, "gated": True},
    ),
    EncoderSpec(
        name="phikon",
        library="transformers",
        architecture="ViTModel",
        hub_id="owkin/phikon",
        domain="medical",
        subdomain="pathology",
        embed_dim=768,
        embedding="cls",
        preprocessing=Preprocessing(
            image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, backend="transformers"
        ),
        license="Owkin non-commercial",
        notes="iBOT ViT-B/16 on 40M TCGA histology tiles; vision only, CLS token.",
    ),
    EncoderSpec(
        name="phikon-v2",
        library="transformers",
        architecture="Dinov2Model",
        hub_id="owkin/phikon-v2",
        domain="medical",
        subdomain="pathology",
        embed_dim=1024,
        embedding="cls",
        preprocessing=Preprocessing(
            image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, backend="transformers"
        ),
        license="Owkin non-commercial",
        notes="DINOv2 ViT-L/16 on 460M pathology tiles; vision only, CLS token.",
    ),
    _unimed(
        "unimed-clip-b16",
        "UzairK/unimed-clip-vit-b16",
        "unimed-clip-vit-b16.pt",
        512,
        {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
        224,
    ),
    _unimed(
        "unimed-clip-l14-336",
        "UzairK/unimed_clip_vit_l14_base_text_encoder",
        "unimed_clip_vit_l14_base_text_encoder.pt",
        768,
        {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14},
        336,
    ),
    EncoderSpec(
        name="bmca-clip",
        aliases=("bmc-clip", "bmc-clip-cf"),
        library="open_clip",
        architecture="ViT-L-14",
        hub_id="BIOMEDICA/BMC_CLIP_CF",
        domain="medical",
        subdomain="broad biomedical",
        embed_dim=768,
        embedding="projected",
        preprocessing=CLIP_224,
        text=CLIP_TEXT,
        license="MIT",
        notes=(
            "BMCA-CLIP / BMC-CLIP (BIOMEDICA, 24M PubMed figure-caption pairs), open_clip "
            "hf-hub layout. Repo id from the BIOMEDICA 'BMC-CLIP Models' collection; its "
            "architecture and preprocessing are checked against open_clip_config.json at load."
        ),
    ),
    EncoderSpec(
        name="flair",
        library="custom",
        architecture="flair-resnet50",
        hub_id="jusiro2/FLAIR",
        domain="medical",
        subdomain="ophthalmology (fundus)",
        embed_dim=512,
        embedding="projected",
        preprocessing=Preprocessing(
            image_size=512,
            resize_mode="pad_bottom_right",
            interpolation="bilinear",
            mean=NO_NORM_MEAN,
            std=NO_NORM_STD,
        ),
        text=TextSide(tokenizer=CLINICALBERT, context_length=77),
        license="Apache-2.0",
        notes=(
            "FLAIR (jusiro/FLAIR): ResNet-50 + Bio_ClinicalBERT, 37 fundus datasets. Images "
            "/255 (no mean/std), longer side to 512, zero padding bottom/right. Hub id from "
            "the FLAIR README (FLAIRModel.from_pretrained); the Google-Drive flair_resnet.pth "
            "also loads (weights=)."
        ),
        options={
            "files": ["model.safetensors", "config.json"],
            "extra_repos": [CLINICALBERT],
            "download": "the FLAIR README (Google Drive flair_resnet.pth)",
        },
    ),
    _medclip(
        "medclip-vit",
        "medclip-swin-tiny",
        ["microsoft/swin-tiny-patch4-window7-224"],
        "Swin-T (microsoft/swin-tiny-patch4-window7-224) + 512-d projection",
        "https://storage.googleapis.com/pytrial/medclip-vit-pretrained.zip",
    ),
    _medclip(
        "medclip-resnet50",
        "medclip-resnet50",
        [],
        "ResNet-50 with a 512-d projection as its fc",
        "the URL in medclip/medclip_resnet_weight.txt of RyanWangZf/MedCLIP",
    ),
    _biovil(
        "biovil",
        "resnet50",
        "microsoft/BiomedVLP-CXR-BERT-specialized",
        "v1.1",
        "biovil_image_resnet50_proj_size_128.pt",
        "02ce6ee460f72efd599295f440dbb453",
        480,
    ),
    _biovil(
        "biovil-t",
        "resnet50_multi_image",
        "microsoft/BiomedVLP-BioViL-T",
        "v1.0",
        "biovil_t_image_model_proj_size_128.pt",
        "a83080e2f23aa584a4f2b24c39b1bb64",
        448,
    ),
    EncoderSpec(
        name="pmc-clip",
        aliases=("pmc-clip-rn50",),
        library="custom",
        architecture="pmc-clip-rn50",
        hub_id="axiong/pmc_oa",
        domain="medical",
        subdomain="broad biomedical",
        embed_dim=768,
        embedding="projected",
        preprocessing=CLIP_224,
        text=TextSide(
            tokenizer="microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext",
            context_length=77,
            padding="max_length",
        ),
        license="MIT",
        notes=(
            "PMC-CLIP (WeixiongLin/PMC-CLIP), the original RN50: CLIP ModifiedResNet (768-d "
            "attention pool, 32 heads) + PubMedBERT, PMC-OA 1.6M. The encoder files live in the "
            "HF *dataset* repo axiong/pmc_oa; no config file (the architecture is fixed here)."
        ),
        options={
            "repo_type": "dataset",
            "files": [
                "image_encoder(resnet50).pth",
                "text_encoder.pth",
                "text_projection_layer.pth",
            ],
            "extra_repos": ["microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext"],
        },
    ),
    EncoderSpec(
        name="keep",
        library="custom",
        architecture="keep-vit-l16",
        hub_id="Astaxanthin/KEEP",
        domain="medical",
        subdomain="pathology",
        embed_dim=768,
        embedding="projected",
        preprocessing=Preprocessing(image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
        text=TextSide(tokenizer="Astaxanthin/KEEP", context_length=256, padding="max_length"),
        license="MIT",
        notes=(
            "KEEP (MAGIC-AI4Med/KEEP): knowledge-enhanced pathology CLIP, timm ViT-L/16 + BERT. "
            "The hub's remote code is re-implemented with its parameter names (no remote code "
            "runs); preprocessing from the KEEP README."
        ),
        options={
            "files": [
                "config.json",
                "model.safetensors",
                "pytorch_model.bin",
                "vocab.txt",
                "tokenizer*",
                "special_tokens_map.json",
            ]
        },
    ),
    EncoderSpec(
        name="conch",
        library="conch",
        architecture="conch_ViT-B-16",
        hub_id="MahmoodLab/CONCH",
        domain="medical",
        subdomain="pathology",
        embed_dim=512,
        embedding="projected",
        preprocessing=Preprocessing(image_size=448),
        text=TextSide(tokenizer="conch", context_length=128),
        license="CC BY-NC-ND 4.0 (gated)",
        notes=(
            "CONCH (mahmoodlab/CONCH) through its own CoCa code (conch package): ViT-B/16 at "
            "448 px, 512-d contrastive projection; 1.17M pathology image-caption pairs."
        ),
        options={"gated": True},
    ),
    EncoderSpec(
        name="conceptclip",
        library="transformers",
        architecture="ConceptCLIP (remote code)",
        hub_id="JerrryNie/ConceptCLIP",
        domain="medical",
        subdomain="multi-modality (MedConcept-23M)",
        embed_dim=1152,
        embedding="projected",
        preprocessing=Preprocessing(
            image_size=384,
            resize_mode="squash",
            interpolation="bicubic",
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
            backend="transformers",
        ),
        text=TextSide(tokenizer="JerrryNie/ConceptCLIP", context_length=77),
        license="MIT (gated)",
        trust_remote_code=True,
        notes=(
            "ConceptCLIP (JerrryNie/ConceptCLIP): concept-enhanced CLIP on SigLIP-SO400M/14 at "
            "384 px with a PubMedBERT text tower; runs its hub remote code (opt-in, pinned "
            "revision). Preprocessing (384 squash bicubic, 0.5/0.5) from the repo's own "
            "evaluation loader; the 1152-d embedding size is unverified (a checkpoint that "
            "differs is reported at extraction)."
        ),
        options={"interface": "conceptclip", "gated": True},
    ),
)
