"""Real loading code, real architectures, exact on-disk layouts, no hub.

Each test builds a randomly initialised model of the real architecture (tiny widths/depths for
speed, except the full-size ViT-B/16 CLIP), saves it the way the hub stores it, puts it in the HF
cache under the zoo spec's repository id, and loads it back *by its registry name* with
HF_HUB_OFFLINE=1. Same weights must give the same features, with the spec's preprocessing.
"""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import timm
import torch
from PIL import Image

from hub_layout import put_in_hf_cache, remove_from_hf_cache, tiny_bert_repo
from medprobe.encoders import create_encoder, get_spec
from medprobe.encoders.spec import IMAGENET_MEAN, IMAGENET_STD, OPENAI_MEAN, OPENAI_STD
from medprobe.errors import MedprobeError


@pytest.fixture(scope="module")
def images():
    """Photo-like (smooth) images of several sizes and aspect ratios: resize kernels of
    different libraries agree on these, as they do on real images, but not on pixel noise."""
    rng = np.random.default_rng(0)
    coarse = [rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(3)]
    return [
        Image.fromarray(c).resize((w, h), Image.Resampling.BICUBIC)
        for c, (h, w) in zip(coarse, ((240, 320), (300, 300), (200, 180)), strict=True)
    ]


def _features_match(encoder, reference_fn, images, atol=1e-4):
    batch = torch.stack([encoder.preprocess(im) for im in images])
    got = encoder.encode_images(batch)
    with torch.inference_mode():
        expected = reference_fn(batch).float().numpy()
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-4)
    return got


def _hf_pixels(folder, images):
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(folder)
    return processor(images=images, return_tensors="pt")["pixel_values"]


def _assert_same_preprocessing(encoder, library_pixels, images, tol=0.02):
    ours = torch.stack([encoder.preprocess(im) for im in images])
    assert ours.shape == library_pixels.shape
    # Library and torchvision resize kernels agree to rounding; a wrong mean/std, size or crop
    # would differ by >0.1 on average.
    assert (ours - library_pixels).abs().mean().item() < tol


# ---------------------------------------------------------------- transformers CLIP (pubmedclip)


def _tiny_clip(projection_dim=512, image_size=224, patch=32):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vocab_size": 1000,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch,
        },
        projection_dim=projection_dim,
    )
    return CLIPModel(config).eval()


def _save_clip(model, folder, size=224):
    from transformers import CLIPImageProcessor

    model.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(OPENAI_MEAN),
        image_std=list(OPENAI_STD),
    ).save_pretrained(folder)


def test_transformers_clip_from_hf_cache_by_name(tmp_path, hf_cache, images):
    model = _tiny_clip()
    _save_clip(model, tmp_path / "m")
    snapshot = put_in_hf_cache(
        hf_cache, "flaviagiammarino/pubmed-clip-vit-base-patch32", tmp_path / "m"
    )
    encoder = create_encoder("pubmedclip")
    assert encoder.weights_source.endswith(snapshot.name)
    _features_match(
        encoder, lambda x: model.get_image_features(pixel_values=x).pooler_output, images
    )
    _assert_same_preprocessing(encoder, _hf_pixels(snapshot, images), images)


@pytest.mark.slow
def test_full_size_vit_b16_clip(tmp_path, hf_cache, images):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(vision_config={"patch_size": 16})  # the ViT-B/16 defaults
    model = CLIPModel(config).eval()
    assert sum(p.numel() for p in model.vision_model.parameters()) == pytest.approx(
        85.8e6, rel=0.01
    )
    _save_clip(model, tmp_path / "m")
    put_in_hf_cache(hf_cache, "openai/clip-vit-base-patch16", tmp_path / "m")
    try:
        encoder = create_encoder("clip-vit-b16")
        got = _features_match(
            encoder, lambda x: model.get_image_features(pixel_values=x).pooler_output, images[:2]
        )
        assert got.shape == (2, get_spec("clip-vit-b16").embed_dim)
    finally:
        remove_from_hf_cache(hf_cache, "openai/clip-vit-base-patch16")


# ----------------------------------------------------------------------- SigLIP, DINOv2


def test_transformers_siglip(tmp_path, hf_cache, images):
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    config = SiglipConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 500,
        },
        vision_config={
            "hidden_size": 768,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 16,
        },
    )
    model = SiglipModel(config).eval()
    model.save_pretrained(tmp_path / "m")
    SiglipImageProcessor(size={"height": 224, "width": 224}).save_pretrained(tmp_path / "m")
    snapshot = put_in_hf_cache(hf_cache, "google/siglip-base-patch16-224", tmp_path / "m")
    encoder = create_encoder("siglip-b16-224")
    assert encoder.spec.preprocessing.resize_mode == "squash"
    _features_match(
        encoder, lambda x: model.get_image_features(pixel_values=x).pooler_output, images
    )
    _assert_same_preprocessing(encoder, _hf_pixels(snapshot, images), images)


def test_transformers_dinov2_cls(tmp_path, hf_cache, images):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(
        Dinov2Config(
            hidden_size=384,
            num_hidden_layers=1,
            num_attention_heads=6,
            intermediate_size=64,
            image_size=224,
            patch_size=14,
        )
    ).eval()
    model.save_pretrained(tmp_path / "m")
    BitImageProcessor(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        do_center_crop=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    ).save_pretrained(tmp_path / "m")
    snapshot = put_in_hf_cache(hf_cache, "facebook/dinov2-small", tmp_path / "m")
    encoder = create_encoder("dinov2-small")
    assert not encoder.has_text
    _features_match(encoder, lambda x: model(pixel_values=x).last_hidden_state[:, 0], images)
    _assert_same_preprocessing(encoder, _hf_pixels(snapshot, images), images)
    with pytest.raises(MedprobeError, match="vision-only"):
        encoder.encode_texts(["a"])


# -------------------------------------------------------- open_clip hf-hub (BiomedCLIP layout)


def test_open_clip_hf_hub_biomedclip_layout(tmp_path, hf_cache, images):
    bert_id = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
    tiny_bert_repo(tmp_path / "bert")
    bert_snapshot = put_in_hf_cache(hf_cache, bert_id, tmp_path / "bert")
    config = {
        "model_cfg": {
            "embed_dim": 512,
            "vision_cfg": {
                "timm_model_name": "vit_tiny_patch16_224",
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": 224,
            },
            "text_cfg": {
                "hf_model_name": bert_id,
                "hf_tokenizer_name": bert_id,
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": 256,
            },
        },
        "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD)},
    }
    repo = tmp_path / "biomedclip"
    repo.mkdir()
    (repo / "open_clip_config.json").write_text(json.dumps(config))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (repo / name).write_bytes((bert_snapshot / name).read_bytes())
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{repo}", load_weights=False, pretrained_text=False)
    torch.save(model.state_dict(), repo / "open_clip_pytorch_model.bin")
    model.eval()
    snapshot = put_in_hf_cache(
        hf_cache, "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", repo
    )

    encoder = create_encoder("biomedclip")
    assert encoder.has_text
    _features_match(encoder, model.encode_image, images)
    _, library_preprocess = open_clip.create_model_from_pretrained(f"local-dir:{snapshot}")
    _assert_same_preprocessing(
        encoder, torch.stack([library_preprocess(im) for im in images]), images, tol=1e-4
    )
    texts = ["a dermoscopy image of benign lesion .", "a dermoscopy image of malignant lesion ."]
    tokenizer = open_clip.get_tokenizer(f"local-dir:{snapshot}")
    with torch.inference_mode():
        expected = model.encode_text(tokenizer(texts, context_length=256)).numpy()
    np.testing.assert_allclose(encoder.encode_texts(texts), expected, atol=1e-5)


def test_open_clip_bin_is_loaded_weights_only(tmp_path, hf_cache):
    """A pickle with non-tensor objects is refused (weights_only=True), with the file named."""
    model = open_clip.create_model("ViT-B-32", load_weights=False)
    config = {"model_cfg": open_clip.get_model_config("ViT-B-32")}
    repo = tmp_path / "quilt"
    repo.mkdir()
    (repo / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(
        {"state_dict": model.state_dict(), "payload": _NotATensor()},
        repo / "open_clip_pytorch_model.bin",
    )
    put_in_hf_cache(hf_cache, "wisdomik/QuiltNet-B-32", repo)
    with pytest.raises(MedprobeError, match="quiltnet-b32: cannot load weights from"):
        create_encoder("quiltnet-b32")


class _NotATensor:
    pass


# ---------------------------------------------------------------- timm (UNI-style hub layout)


def test_timm_hub_layout(tmp_path, hf_cache, images):
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_large_patch16_224", depth=1, num_classes=0, init_values=1e-5, dynamic_img_size=True
    ).eval()
    # UNI's hub config declares ImageNet statistics (timm's default ViT-L cfg says 0.5) and its
    # transform is Resize(224) + CenterCrop(224), i.e. crop_pct 1 (timm's default ViT-L: 0.9).
    model.pretrained_cfg = {
        **model.pretrained_cfg,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "crop_pct": 1.0,
    }
    timm.models.save_for_hf(
        model, str(tmp_path / "m"), model_args={"depth": 1}, safe_serialization=True
    )
    assert (tmp_path / "m" / "model.safetensors").is_file()
    put_in_hf_cache(hf_cache, "MahmoodLab/UNI", tmp_path / "m")
    encoder = create_encoder("uni")
    _features_match(encoder, model, images)


# ------------------------------------------------------ LLM2CLIP: remote code, image tower only

_LLM2CLIP_CONFIG = """
from transformers import CLIPConfig


class LLM2CLIPConfig(CLIPConfig):
    model_type = "llm2clip"
"""
_LLM2CLIP_MODELING = '''
from transformers import CLIPModel

from .configuration_llm2clip import LLM2CLIPConfig


class LLM2CLIPModel(CLIPModel):
    """Stand-in for the hub's remote code: the CLIP image tower; the text side is an external
    LLM whose embeddings go through get_text_features."""

    config_class = LLM2CLIPConfig
'''


def _llm2clip_repo(tmp_path, hf_cache):
    model = _tiny_clip(projection_dim=1280, image_size=224, patch=32)
    folder = tmp_path / "llm2clip"
    _save_clip(model, folder)
    (folder / "configuration_llm2clip.py").write_text(_LLM2CLIP_CONFIG)
    (folder / "modeling_llm2clip.py").write_text(_LLM2CLIP_MODELING)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "llm2clip"
    config["architectures"] = ["LLM2CLIPModel"]
    config["auto_map"] = {
        "AutoConfig": "configuration_llm2clip.LLM2CLIPConfig",
        "AutoModel": "modeling_llm2clip.LLM2CLIPModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    commit = "1" * 40
    put_in_hf_cache(hf_cache, "microsoft/LLM2CLIP-Openai-B-16", folder, commit=commit)
    return model, commit


def test_llm2clip_image_tower_needs_opt_in_and_a_pinned_revision(tmp_path, hf_cache, images):
    model, commit = _llm2clip_repo(tmp_path, hf_cache)
    with pytest.raises(MedprobeError, match="trust_remote_code=True"):
        create_encoder("llm2clip-openai-b16")
    with pytest.raises(MedprobeError, match="pinned revision"):
        create_encoder("llm2clip-openai-b16", trust_remote_code=True)
    encoder = create_encoder("llm2clip-openai-b16", trust_remote_code=True, revision=commit)
    assert encoder.weights_source == f"microsoft/LLM2CLIP-Openai-B-16@{commit}"
    got = _features_match(
        encoder, lambda x: model.get_image_features(pixel_values=x).pooler_output, images
    )
    assert got.shape[1] == 1280
    # Image features never load the 8B LLM text side.
    assert encoder._tokenizer is None


# ------------------------------------------------------------------------ local folders


def test_local_folders_describe_themselves(tmp_path, images):
    model = _tiny_clip(projection_dim=64)
    _save_clip(model, tmp_path / "my-clip")
    encoder = create_encoder(f"local:{tmp_path / 'my-clip'}", domain="medical")
    assert encoder.spec.library == "transformers" and encoder.spec.embed_dim == 64
    assert encoder.spec.domain == "medical"
    _features_match(
        encoder, lambda x: model.get_image_features(pixel_values=x).pooler_output, images
    )

    torch.manual_seed(1)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0).eval()
    timm.models.save_for_hf(vit, str(tmp_path / "my-vit"), safe_serialization=True)
    encoder = create_encoder(f"local:{tmp_path / 'my-vit'}")
    assert encoder.spec.library == "timm" and encoder.spec.embed_dim == 192
    _features_match(encoder, vit, images)


def test_zoo_spec_with_local_weights(tmp_path, images):
    model = _tiny_clip()
    _save_clip(model, tmp_path / "plip")
    encoder = create_encoder("plip", weights=tmp_path / "plip")
    assert encoder.spec.name == "plip"
    _features_match(
        encoder, lambda x: model.get_image_features(pixel_values=x).pooler_output, images
    )


# ------------------------------------------------------------------------------ failures


def test_missing_weights_offline_is_one_clear_sentence():
    with pytest.raises(MedprobeError) as info:
        create_encoder("monet")
    message = str(info.value)
    assert "\n" not in message
    for fragment in (
        "monet",
        "suinleelab/monet",
        "hf download",
        "not in the local cache",
        "--weights /path",
    ):
        assert fragment in message


def test_corrupt_weights_name_the_file(tmp_path):
    model = _tiny_clip()
    _save_clip(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(MedprobeError, match=r"cannot load weights from .*m"):
        create_encoder("plip", weights=tmp_path / "m")


def test_mismatched_shapes_name_the_file(tmp_path):
    from safetensors.torch import save_file

    model = _tiny_clip()
    _save_clip(model, tmp_path / "m")
    other = _tiny_clip(projection_dim=128)  # same names, different projection shapes
    save_file(
        {k: v.contiguous() for k, v in other.state_dict().items()},
        str(tmp_path / "m" / "model.safetensors"),
    )
    with pytest.raises(MedprobeError, match="cannot load weights from"):
        create_encoder("plip", weights=tmp_path / "m")


def test_spec_disagreeing_with_the_checkpoint_is_refused(tmp_path, hf_cache):
    from transformers import CLIPImageProcessor

    model = _tiny_clip()
    model.save_pretrained(tmp_path / "m")
    CLIPImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    ).save_pretrained(tmp_path / "m")
    put_in_hf_cache(hf_cache, "openai/clip-vit-base-patch32", tmp_path / "m")
    try:
        with pytest.raises(MedprobeError, match="disagrees with the checkpoint"):
            create_encoder("clip-vit-b32")
    finally:
        remove_from_hf_cache(hf_cache, "openai/clip-vit-base-patch32")
