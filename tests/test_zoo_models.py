"""The medical systems of the study's field, each through its real code path (issue 16).

For every model: random weights of the real architecture, saved in the exact on-disk layout of
the real release (hub snapshot or the release's own file names), loaded back offline by our
loader, features equal to the architecture's own forward, and the key list (names and shapes)
checked against the release's, written down here from the public model code. Widths/depths are
reduced only where the release's config lets them vary (text towers, CONCH's CoCa, KEEP's ViT
depth); the image towers of the ResNet-50 models are full size.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hub_layout import put_in_hf_cache, tiny_bert_repo
from medprobe.encoders import create_encoder, get_spec
from medprobe.errors import MedprobeError

BIOMEDBERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
CLINICALBERT = "emilyalsentzer/Bio_ClinicalBERT"
TEXTS = ["a chest x-ray of pneumonia .", "a fundus photo of the normal tissue ."]


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    coarse = [rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(2)]
    return [
        Image.fromarray(c).resize((w, h), Image.Resampling.BICUBIC)
        for c, (h, w) in zip(coarse, ((240, 320), (300, 260)), strict=True)
    ]


def _batch(encoder, images):
    return torch.stack([encoder.preprocess(im) for im in images])


def _same(encoder, reference, images, atol=1e-4):
    batch = _batch(encoder, images)
    got = encoder.encode_images(batch)
    with torch.inference_mode():
        expected = reference(batch).float().numpy()
    assert got.shape == (len(images), encoder.spec.embed_dim)
    np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-4)


def _shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _with(prefix: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {prefix + k: v for k, v in shapes.items()}


def _bert_shapes(folder, pooler=True):
    from transformers import BertConfig, BertModel

    with torch.device("meta"):
        model = BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=pooler)
    return _shapes(model)


def _resnet50_shapes():
    import torchvision

    with torch.device("meta"):
        return _shapes(torchvision.models.resnet50())


def _modified_rn50_shapes():
    """OpenAI CLIP's ModifiedResNet as PMC-CLIP's blocks.py names it: 3-conv stem, Bottleneck
    blocks with an avg-pool + conv + bn ``downsample``, attention pool (768-d output)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(name, c):
        shapes.update({f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean")})
        shapes[f"{name}.running_var"] = (c,)
        shapes[f"{name}.num_batches_tracked"] = ()

    for i, (cin, cout) in enumerate(((3, 32), (32, 32), (32, 64)), start=1):
        shapes[f"conv{i}.weight"] = (cout, cin, 3, 3)
        bn(f"bn{i}", cout)
    inplanes = 64
    for layer, (planes, blocks) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), start=1
    ):
        for b in range(blocks):
            name = f"layer{layer}.{b}"
            shapes[f"{name}.conv1.weight"] = (planes, inplanes, 1, 1)
            shapes[f"{name}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"{name}.conv3.weight"] = (planes * 4, planes, 1, 1)
            for j, c in ((1, planes), (2, planes), (3, planes * 4)):
                bn(f"{name}.bn{j}", c)
            if b == 0:
                shapes[f"{name}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{name}.downsample.1", planes * 4)
            inplanes = planes * 4
    shapes["attnpool.positional_embedding"] = (50, 2048)
    for proj, out in (("k_proj", 2048), ("q_proj", 2048), ("v_proj", 2048), ("c_proj", 768)):
        shapes[f"attnpool.{proj}.weight"] = (out, 2048)
        shapes[f"attnpool.{proj}.bias"] = (out,)
    return shapes


# ------------------------------------------------------------------------------- UniMed-CLIP


def _unimed_fork_shapes(layers, width, patch, size, dim, bert):
    """The UniMed-CLIP fork's CLIP (src/open_clip/model.py): VisualTransformer ``visual.*`` and
    HFTextEncoder ``text_encoder.*`` (no BERT pooler, MLP projection), ``logit_scale``."""
    grid = (size // patch) ** 2 + 1
    shapes = {
        "visual.conv1.weight": (width, 3, patch, patch),
        "visual.class_embedding": (width,),
        "visual.positional_embedding": (grid, width),
        "visual.ln_pre.weight": (width,),
        "visual.ln_pre.bias": (width,),
        "visual.ln_post.weight": (width,),
        "visual.ln_post.bias": (width,),
        "visual.proj": (width, dim),
        "logit_scale": (),
    }
    for i in range(layers):
        block = f"visual.transformer.resblocks.{i}"
        shapes.update(
            {
                f"{block}.attn.in_proj_weight": (3 * width, width),
                f"{block}.attn.in_proj_bias": (3 * width,),
                f"{block}.attn.out_proj.weight": (width, width),
                f"{block}.attn.out_proj.bias": (width,),
                f"{block}.mlp.c_fc.weight": (4 * width, width),
                f"{block}.mlp.c_fc.bias": (4 * width,),
                f"{block}.mlp.c_proj.weight": (width, 4 * width),
                f"{block}.mlp.c_proj.bias": (width,),
                **{f"{block}.ln_{j}.{p}": (width,) for j in (1, 2) for p in ("weight", "bias")},
            }
        )
    hidden = _bert_shapes(bert, pooler=False)
    d = hidden["embeddings.word_embeddings.weight"][1]
    shapes.update(_with("text_encoder.transformer.", hidden))
    shapes["text_encoder.proj.0.weight"] = ((d + dim) // 2, d)
    shapes["text_encoder.proj.2.weight"] = (dim, (d + dim) // 2)
    return shapes


@pytest.mark.parametrize(
    ("name", "layers", "width", "patch", "size", "dim"),
    [("unimed-clip-b16", 12, 768, 16, 224, 512), ("unimed-clip-l14-336", 24, 1024, 14, 336, 768)],
)
def test_unimed_clip_key_list_is_the_forks(tmp_path, name, layers, width, patch, size, dim):
    import open_clip

    from medprobe.encoders.open_clip_loader import _renamed

    spec = get_spec(name)
    bert = tiny_bert_repo(tmp_path / "bert")
    config = spec.options["model_cfg"]
    text_cfg = {**config["text_cfg"], "hf_model_name": str(bert), "hf_model_pretrained": False}
    config = {**config, "text_cfg": text_cfg}
    with torch.device("meta"):
        model = open_clip.CustomTextCLIP(**config)
    fork = _unimed_fork_shapes(layers, width, patch, size, dim, bert)
    renamed = _renamed(dict(fork), spec.options["key_map"])  # fork names -> upstream names
    assert _shapes(model) == renamed
    assert spec.preprocessing.image_size == size and spec.embed_dim == dim


def test_unimed_clip_release_file_loads_through_open_clip(tmp_path, hf_cache, images):
    import open_clip

    spec = get_spec("unimed-clip-b16")
    bert = put_in_hf_cache(hf_cache, BIOMEDBERT, tiny_bert_repo(tmp_path / "bert"))
    tiny = {**spec.options["model_cfg"]}
    tiny["vision_cfg"] = {"image_size": 224, "layers": 2, "width": 64, "patch_size": 16}
    tiny["embed_dim"] = 32
    spec = spec.model_copy(update={"embed_dim": 32, "options": {**spec.options, "model_cfg": tiny}})
    torch.manual_seed(0)
    text_cfg = {**tiny["text_cfg"], "hf_model_name": str(bert), "hf_model_pretrained": False}
    reference = open_clip.CustomTextCLIP(**{**tiny, "text_cfg": text_cfg}).eval()
    # The release: a training checkpoint of the fork (module. prefix, text_encoder.* keys).
    fork_state = {
        "module." + k.replace("text.", "text_encoder.", 1): v
        for k, v in reference.state_dict().items()
    }
    release = tmp_path / "release"
    release.mkdir()
    torch.save({"epoch": 1, "state_dict": fork_state}, release / "unimed-clip-vit-b16.pt")
    put_in_hf_cache(hf_cache, "UzairK/unimed-clip-vit-b16", release)
    encoder = create_encoder(spec)
    assert encoder.weights_source.startswith("UzairK/unimed-clip-vit-b16@")
    assert f"+ {BIOMEDBERT}@" in encoder.weights_source
    _same(encoder, reference.encode_image, images)
    tokenizer = open_clip.tokenizer.HFTokenizer(str(bert))
    with torch.inference_mode():
        expected = reference.encode_text(tokenizer(TEXTS, context_length=256)).numpy()
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), expected, atol=1e-5)


# ------------------------------------------------------------------------ BioViL / BioViL-T


def _md5(path):
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_biovil_specs_carry_hi_mls_pinned_constants():
    from health_multimodal.image.model import pretrained as hi_ml

    biovil, biovil_t = get_spec("biovil"), get_spec("biovil-t")
    assert (biovil.hub_id, biovil.revision) == (
        hi_ml.BIOMED_VLP_CXR_BERT_SPECIALIZED,
        hi_ml.CXR_BERT_COMMIT_TAG,
    )
    assert biovil.options["image_weights"] == hi_ml.BIOVIL_IMAGE_WEIGHTS_NAME
    assert biovil.options["md5"] == hi_ml.BIOVIL_IMAGE_WEIGHTS_MD5
    assert (biovil_t.hub_id, biovil_t.revision) == (
        hi_ml.BIOMED_VLP_BIOVIL_T,
        hi_ml.BIOVIL_T_COMMIT_TAG,
    )
    assert biovil_t.options["image_weights"] == hi_ml.BIOVIL_T_IMAGE_WEIGHTS_NAME
    assert biovil_t.options["md5"] == hi_ml.BIOVIL_T_IMAGE_WEIGHTS_MD5
    assert biovil.embed_dim == biovil_t.embed_dim == hi_ml.JOINT_FEATURE_SIZE


def test_biovil_preprocessing_is_hi_mls(shared_data):
    from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference

    from medprobe.encoders.transforms import build_geometry, normalize

    for name, crop in (("biovil", 480), ("biovil-t", 448)):
        spec = get_spec(name)
        theirs = create_chest_xray_transform_for_inference(resize=512, center_crop_size=crop)
        for path in sorted((shared_data / "medsamples/kermany_pediatric_cxr_224").rglob("*"))[:6]:
            if not path.is_file():
                continue
            grey = Image.open(path).convert("L")
            geometry = build_geometry(spec.preprocessing)(grey.convert("RGB"))
            ours = normalize(geometry[None], spec.preprocessing)
            assert (ours[0] - theirs(grey)).abs().max().item() < 1.5 / 255


def test_biovil_image_and_text_through_hi_ml(tmp_path, hf_cache, images):
    from health_multimodal.image.model.model import ImageModel
    from health_multimodal.text.model import CXRBertConfig, CXRBertModel, CXRBertTokenizer

    torch.manual_seed(0)
    reference = ImageModel(img_encoder_type="resnet50", joint_feature_size=128).eval()
    repo = tmp_path / "cxr-bert"
    tiny_bert_repo(repo, config_class=CXRBertConfig, projection_size=128)
    text_model = CXRBertModel(CXRBertConfig.from_pretrained(repo)).eval()
    text_model.save_pretrained(repo, safe_serialization=False)
    torch.save(reference.state_dict(), repo / "biovil_image_resnet50_proj_size_128.pt")
    commit = "2" * 40
    put_in_hf_cache(hf_cache, "microsoft/BiomedVLP-CXR-BERT-specialized", repo, commit, "v1.1")

    spec = get_spec("biovil")
    with pytest.raises(MedprobeError, match="MD5 differs from hi-ml's"):
        create_encoder(spec)  # random weights are not the released file
    md5 = _md5(repo / "biovil_image_resnet50_proj_size_128.pt")
    spec = spec.model_copy(update={"options": {**spec.options, "md5": md5}})
    encoder = create_encoder(spec)
    assert encoder.weights_source == f"microsoft/BiomedVLP-CXR-BERT-specialized@{commit}"
    _same(encoder, lambda x: reference(x).projected_global_embedding, images)
    tokenizer = CXRBertTokenizer.from_pretrained(repo)
    tokens = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = text_model.get_projected_text_embeddings(
            tokens["input_ids"], tokens["attention_mask"]
        ).numpy()
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), expected, atol=1e-5)


@pytest.mark.slow
def test_biovil_t_multi_image_model_through_hi_ml(tmp_path, hf_cache, images):
    from health_multimodal.image.model.model import ImageModel

    torch.manual_seed(0)
    reference = ImageModel(img_encoder_type="resnet50_multi_image", joint_feature_size=128).eval()
    keys = _shapes(reference)
    assert keys["encoder.backbone_to_vit.weight"] == (256, 2048, 1, 1)
    assert keys["projector.model.3.weight"] == (128, 128, 1, 1)  # 512-d [static, diff] -> 128
    repo = tmp_path / "biovil-t"
    repo.mkdir()
    torch.save(reference.state_dict(), repo / "biovil_t_image_model_proj_size_128.pt")
    put_in_hf_cache(hf_cache, "microsoft/BiomedVLP-BioViL-T", repo, "3" * 40, "v1.0")
    spec = get_spec("biovil-t")
    md5 = _md5(repo / "biovil_t_image_model_proj_size_128.pt")
    encoder = create_encoder(spec.model_copy(update={"options": {**spec.options, "md5": md5}}))
    _same(encoder, lambda x: reference(x).projected_global_embedding, images[:1])


# ------------------------------------------------------------------------------------- CONCH


def test_conch_key_list_and_coca_forward(tmp_path, hf_cache, images):
    from conch.open_clip_custom import coca_model

    from medprobe.encoders.conch_loader import conch_config

    spec = get_spec("conch")
    real = conch_config(spec)
    with torch.device("meta"):
        shapes = _shapes(coca_model.CoCa(**real))
    # conch_ViT-B-16.json: ViT-B/16 at 448 px (28x28 + 1 tokens), a 512-d contrastive pool,
    # 32007-token vocabulary of width 768, 128-token context; caption decoder text_decoder.*.
    assert shapes["visual.trunk.pos_embed"] == (1, 785, 768)
    assert shapes["visual.proj_contrast"] == (512, 512)
    assert shapes["text.token_embedding.weight"] == (32007, 768)
    assert shapes["text.positional_embedding"] == (128, 768)
    assert {k.split(".")[0] for k in shapes} == {"visual", "text", "text_decoder", "logit_scale"}

    tiny = json.loads(json.dumps(real))
    tiny["vision_cfg"].update({"image_size": 64, "layers": 1, "width": 64, "num_heads": 2})
    tiny["embed_dim"], tiny["embed_dim_caption"] = 32, 64
    for cfg in (tiny["text_cfg"], tiny["multimodal_cfg"]):
        cfg.update({"width": 64, "heads": 2, "layers": 1})
    spec = spec.model_copy(
        update={
            "embed_dim": 32,
            "preprocessing": spec.preprocessing.model_copy(update={"image_size": 64}),
            "options": {**spec.options, "model_cfg": tiny},
        }
    )
    torch.manual_seed(0)
    reference = coca_model.CoCa(**conch_config(spec)).eval()
    release = tmp_path / "conch"
    release.mkdir()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("text_decoder")}
    torch.save(state, release / "pytorch_model.bin")  # the hub file: decoder weights removed
    (release / "meta.yaml").write_text("model_name: conch_ViT-B-16\n")
    put_in_hf_cache(hf_cache, "MahmoodLab/CONCH", release)
    encoder = create_encoder(spec)
    _same(encoder, lambda x: reference.encode_image(x, proj_contrast=True, normalize=False), images)
    texts = encoder.encode_texts(TEXTS)
    assert texts.shape == (2, 32) and not np.allclose(texts[0], texts[1])

    del state["visual.proj_contrast"]
    torch.save(state, release / "pytorch_model.bin")
    put_in_hf_cache(hf_cache, "MahmoodLab/CONCH", release)
    with pytest.raises(MedprobeError, match="do not fit CONCH's CoCa"):
        create_encoder(spec)


# ---------------------------------------------------------------- FLAIR, MedCLIP, PMC-CLIP, KEEP


def test_flair_hub_mixin_layout(tmp_path, hf_cache, images):
    from safetensors.torch import save_file

    from medprobe.encoders.architectures import Flair

    bert = put_in_hf_cache(hf_cache, CLINICALBERT, tiny_bert_repo(tmp_path / "bert"))
    torch.manual_seed(0)
    model = Flair(bert).eval()
    expected = {
        **_with(
            "vision_model.model.",
            {k: v for k, v in _resnet50_shapes().items() if not k.startswith("fc.")},
        ),
        "vision_model.projection_head_vision.projection.weight": (512, 2048),
        **_with("text_model.model.", _bert_shapes(bert)),
        "text_model.projection_head_text.projection.weight": (512, 32),
        "logit_scale": (),
    }
    assert _shapes(model) == expected
    repo = tmp_path / "flair"
    repo.mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["text_model.model.embeddings.position_ids"] = torch.arange(512)[None]  # old BERT buffer
    save_file(state, str(repo / "model.safetensors"))
    (repo / "config.json").write_text(json.dumps({"vision_type": "resnet_v1", "proj_dim": 512}))
    put_in_hf_cache(hf_cache, "jusiro2/FLAIR", repo)
    encoder = create_encoder("flair")
    batch = _batch(encoder, images)
    assert batch.shape == (2, 3, 512, 512) and batch.min() >= 0 and batch.max() <= 1
    # The canvas: the longer side fills 512, the rest is zero at the bottom / right.
    assert batch[0, :, 384:, :].abs().sum() == 0 and batch[0, :, :383, :].abs().sum() > 0

    def flair(x):  # FLAIR's VisionModel + ProjectionLayer
        features = F.normalize(model.vision_model.model(x), dim=-1)
        w = model.vision_model.projection_head_vision.projection.weight
        return F.normalize(features @ w.T, dim=-1)

    _same(encoder, flair, images)
    assert np.allclose(np.linalg.norm(encoder.encode_texts(TEXTS), axis=1), 1, atol=1e-5)
    # The Google-Drive release file loads too (weights=).
    torch.save(model.state_dict(), tmp_path / "flair_resnet.pth")
    again = create_encoder("flair", weights=tmp_path / "flair_resnet.pth")
    np.testing.assert_allclose(again.encode_images(batch), encoder.encode_images(batch), atol=1e-6)


def _old_swin_names(state):
    """transformers 4.x Swin names (what MedCLIP's release was saved with)."""
    old = {}
    for k, v in state.items():
        k = (
            k.replace("attention.q_proj", "attention.self.query")
            .replace("attention.k_proj", "attention.self.key")
            .replace("attention.v_proj", "attention.self.value")
            .replace("attention.o_proj", "attention.output.dense")
            .replace(
                "attention.relative_position_bias.relative_position_bias_table",
                "attention.self.relative_position_bias_table",
            )
            .replace("mlp.fc1", "intermediate.dense")
            .replace("mlp.fc2", "output.dense")
        )
        old[k] = v
        if k.endswith("attention.self.relative_position_bias_table"):
            old[k.replace("_bias_table", "_index")] = torch.zeros(49 * 49, dtype=torch.long)
    return old


@pytest.mark.parametrize("name", ["medclip-vit", "medclip-resnet50"])
def test_medclip_release_folder(tmp_path, hf_cache, images, name):
    from transformers import SwinConfig

    from medprobe.encoders.architectures import MedCLIPResNet, MedCLIPSwin

    bert = put_in_hf_cache(hf_cache, CLINICALBERT, tiny_bert_repo(tmp_path / "bert"))
    swin = tmp_path / "swin"
    SwinConfig().save_pretrained(
        swin
    )  # the Swin-T defaults = microsoft/swin-tiny-patch4-window7-224
    swin = put_in_hf_cache(hf_cache, "microsoft/swin-tiny-patch4-window7-224", swin)
    spec = get_spec(name)
    extras = {CLINICALBERT: bert, "microsoft/swin-tiny-patch4-window7-224": swin}
    torch.manual_seed(0)
    kind = MedCLIPSwin if name == "medclip-vit" else MedCLIPResNet
    model = kind.build(spec, tmp_path, extras).eval()
    shapes = _shapes(model)
    if name == "medclip-resnet50":
        resnet = {k: v for k, v in _resnet50_shapes().items() if k != "fc.bias"}
        resnet["fc.weight"] = (512, 2048)
        assert {k: v for k, v in shapes.items() if k.startswith("vision_model.")} == _with(
            "vision_model.model.", resnet
        )
    else:
        assert shapes["vision_model.projection_head.weight"] == (512, 768)
        assert shapes["vision_model.model.embeddings.patch_embeddings.projection.weight"] == (
            96,
            3,
            4,
            4,
        )
    assert shapes["text_model.projection_head.weight"] == (512, 32)
    state = model.state_dict()
    if name == "medclip-vit":
        state = _old_swin_names(state)
        assert "vision_model.model.encoder.layers.0.blocks.0.attention.self.query.weight" in state
    release = tmp_path / "release"
    release.mkdir()
    torch.save(state, release / "pytorch_model.bin")
    with pytest.raises(MedprobeError, match="not on the Hugging Face hub"):
        create_encoder(name)
    encoder = create_encoder(name, weights=release)
    assert encoder.spec.preprocessing.resize_mode == "squash"

    def medclip(x):
        if name == "medclip-vit":
            pooled = model.vision_model.model(pixel_values=x).pooler_output
            return F.normalize(pooled @ model.vision_model.projection_head.weight.T, dim=-1)
        return F.normalize(model.vision_model.model(x), dim=-1)

    _same(encoder, medclip, images)
    assert encoder.encode_texts(TEXTS).shape == (2, 512)


def test_pmc_clip_dataset_repo_files(tmp_path, hf_cache, images):
    from open_clip.modified_resnet import ModifiedResNet
    from transformers import AutoTokenizer, BertConfig, BertModel

    pubmedbert = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext"
    bert = put_in_hf_cache(hf_cache, pubmedbert, tiny_bert_repo(tmp_path / "bert"))
    torch.manual_seed(0)
    visual = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=768, heads=32, image_size=224).eval()
    assert _shapes(visual) == _modified_rn50_shapes()
    text = BertModel(BertConfig.from_pretrained(bert)).eval()
    projection = torch.randn(32, 768)
    files = tmp_path / "pmc_oa"
    files.mkdir()
    torch.save(visual.state_dict(), files / "image_encoder(resnet50).pth")
    torch.save(text.state_dict(), files / "text_encoder.pth")
    torch.save(projection, files / "text_projection_layer.pth")
    snapshot = put_in_hf_cache(hf_cache, "axiong/pmc_oa", files, repo_type="dataset")
    encoder = create_encoder("pmc-clip")
    assert encoder.weights_source.startswith(f"axiong/pmc_oa@{snapshot.name}")
    _same(encoder, visual, images)
    tokens = AutoTokenizer.from_pretrained(bert)(
        TEXTS, padding="max_length", max_length=77, return_tensors="pt"
    )
    with torch.inference_mode():
        # PMC-CLIP's encode_text: input ids only (no attention mask), [CLS] @ projection.
        hidden = text(input_ids=tokens["input_ids"]).last_hidden_state
        expected = (hidden[:, 0] @ projection).numpy()
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), expected, atol=1e-5)


def test_keep_hub_layout_without_remote_code(tmp_path, hf_cache, images):
    import timm
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    from medprobe.encoders.architectures import Keep

    repo = tiny_bert_repo(tmp_path / "keep")
    text_config = json.loads((repo / "config.json").read_text())
    config = {
        "model_type": "keep",
        "architectures": ["KEEPModel"],
        "auto_map": {"AutoModel": "modeling_keep.KEEPModel"},
        "projection_dim": 768,
        "text_config": {k: v for k, v in text_config.items() if k != "architectures"},
    }
    (repo / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = Keep({"depth": 1}, config["text_config"], 768).eval()
    with torch.device("meta"):
        vit_l = timm.create_model(
            "vit_large_patch16_224", num_classes=0, init_values=1e-5, dynamic_img_size=True
        )
    shapes = _shapes(model)
    assert shapes["visual_head.0.weight"] == (768, 1024) and shapes["visual_head.2.weight"] == (
        768,
        768,
    )
    full = {k: v for k, v in _shapes(vit_l).items() if not k.startswith("blocks.")}
    assert {k: v for k, v in shapes.items() if k.startswith("visual.") and ".blocks." not in k} == (
        _with("visual.", full)
    )
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(repo / "model.safetensors")
    )
    put_in_hf_cache(hf_cache, "Astaxanthin/KEEP", repo)
    spec = get_spec("keep")
    spec = spec.model_copy(update={"options": {**spec.options, "vision_args": {"depth": 1}}})
    encoder = create_encoder(spec)  # no trust_remote_code: the architecture is ours
    _same(encoder, model.encode_image, images)
    tok = AutoTokenizer.from_pretrained(repo)(
        TEXTS, max_length=256, padding="max_length", truncation=True, return_tensors="pt"
    )
    with torch.inference_mode():
        expected = F.normalize(model.text(**tok).pooler_output, dim=-1).numpy()
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), expected, atol=1e-5)


# ----------------------------------------------------------------- BMCA-CLIP (open_clip hf-hub)


def test_bmca_clip_open_clip_hf_hub_layout(tmp_path, hf_cache, images):
    import open_clip

    config = {
        "model_cfg": {
            "embed_dim": 768,
            "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "patch_size": 14},
            "text_cfg": {
                "context_length": 77,
                "vocab_size": 49408,
                "width": 32,
                "heads": 2,
                "layers": 1,
            },
        },
        "preprocess_cfg": {
            "mean": list(get_spec("bmca-clip").preprocessing.mean),
            "std": list(get_spec("bmca-clip").preprocessing.std),
        },
    }
    repo = tmp_path / "bmca"
    repo.mkdir()
    (repo / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{repo}", load_weights=False).eval()
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(repo / "open_clip_model.safetensors"))
    put_in_hf_cache(hf_cache, "BIOMEDICA/BMC_CLIP_CF", repo)
    encoder = create_encoder("bmc-clip")
    assert encoder.name == "bmca-clip"
    _same(encoder, model.encode_image, images)


# ------------------------------------------------------- ConceptCLIP: remote code, opt-in only

_CONCEPTCLIP_MODELING = '''
import torch
from transformers import BertConfig, BertModel, PretrainedConfig, PreTrainedModel


class ConceptCLIPConfig(PretrainedConfig):
    model_type = "conceptclip"

    def __init__(self, dim=1152, text_config=None, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.text_config = dim, text_config or {}


class _Text(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.bert = BertModel(BertConfig(**config.text_config))
        self.proj = torch.nn.Linear(self.bert.config.hidden_size, config.dim)

    def forward(self, input_ids):
        return (self.proj(self.bert(input_ids=input_ids).last_hidden_state[:, 0]),)


class ConceptCLIPModel(PreTrainedModel):
    """Stand-in for the hub's remote code with its calls: model(pixel_values=...) returns a dict
    with image_features; model.text(input_ids)[0] are the text features."""

    config_class = ConceptCLIPConfig

    def __init__(self, config):
        super().__init__(config)
        self.visual = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 16, 16), torch.nn.Flatten())
        self.image_proj = torch.nn.Sequential(
            torch.nn.Linear(8 * 24 * 24, 64), torch.nn.GELU(), torch.nn.Linear(64, config.dim)
        )
        self.text = _Text(config)
        self.logit_scale = torch.nn.Parameter(torch.zeros(()))
        self.post_init()

    def forward(self, pixel_values=None, input_ids=None):
        out = {"logit_scale": self.logit_scale.exp()}
        if pixel_values is not None:
            out["image_features"] = self.image_proj(self.visual(pixel_values))
        if input_ids is not None:
            out["text_features"] = self.text(input_ids)[0]
        return out
'''


def test_conceptclip_runs_its_remote_code_only_on_opt_in(tmp_path, hf_cache, images):
    repo = tiny_bert_repo(tmp_path / "conceptclip")
    text_config = json.loads((repo / "config.json").read_text())
    (repo / "modeling_conceptclip.py").write_text(_CONCEPTCLIP_MODELING)
    namespace: dict = {}
    exec(_CONCEPTCLIP_MODELING, namespace)  # the same class, to build the reference weights
    torch.manual_seed(0)
    model = namespace["ConceptCLIPModel"](namespace["ConceptCLIPConfig"](text_config=text_config))
    model.eval().save_pretrained(repo)
    config = json.loads((repo / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "modeling_conceptclip.ConceptCLIPConfig",
        "AutoModel": "modeling_conceptclip.ConceptCLIPModel",
    }
    (repo / "config.json").write_text(json.dumps(config))
    commit = "4" * 40
    put_in_hf_cache(hf_cache, "JerrryNie/ConceptCLIP", repo, commit)
    with pytest.raises(MedprobeError, match="trust_remote_code=True"):
        create_encoder("conceptclip")
    with pytest.raises(MedprobeError, match="pinned revision"):
        create_encoder("conceptclip", trust_remote_code=True)
    encoder = create_encoder("conceptclip", trust_remote_code=True, revision=commit)
    assert encoder.weights_source == f"JerrryNie/ConceptCLIP@{commit}"
    _same(encoder, lambda x: model(pixel_values=x)["image_features"], images)
    from transformers import AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(repo)(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model.text(tokens["input_ids"])[0].numpy()
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), expected, atol=1e-5)
