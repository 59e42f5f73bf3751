"""Layer taps: every loader's blocks against the library's own intermediates, layer-wise
extraction in the store (final = today's entry), the planted-signal and CKA checks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from medprobe.analysis.layer_suite import layer_probes, layer_similarity
from medprobe.analysis.layerwise import LayerCKA
from medprobe.analysis.rows import RowContext, results_frame
from medprobe.analysis.suite import DatasetInput, UnitInput
from medprobe.datasets import open_source
from medprobe.datasets.synthetic import synthetic
from medprobe.encoders import create_encoder, get_spec
from medprobe.encoders.base import TorchEncoder
from medprobe.encoders.layers import select_taps
from medprobe.encoders.options import BuildOptions, WeightsRef
from medprobe.encoders.spec import EncoderSpec, Preprocessing
from medprobe.encoders.transformers_loader import HFEncoder
from medprobe.errors import MedprobeError
from medprobe.features import extract
from medprobe.features.extraction import cache_key
from medprobe.features.layers import extract_layers
from medprobe.features.store import Entry, FeatureStore

_PRE64 = Preprocessing(image_size=64)


def _timm_spec(architecture: str, embedding: str, dim: int, seed: int = 0) -> EncoderSpec:
    base = get_spec("random-vit" if embedding == "projected" else "random-resnet50")
    return base.model_copy(
        update={
            "name": f"tiny-{architecture}-{seed}",
            "aliases": (),
            "architecture": architecture,
            "embed_dim": dim,
            "preprocessing": _PRE64,
            "options": {"seed": seed, "random_init": True},
        }
    )


def _batch(n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _assert_taps(encoder, batch, reference: list[torch.Tensor], pooling: str, dims: list[int]):
    """The encoder's block taps equal the library's own per-block outputs; final equals
    encode_images bit for bit."""
    taps = encoder.layers()
    assert [t.name for t in taps][-1] == "final"
    blocks = taps[:-1]
    assert [t.pooling for t in blocks] == [pooling] * len(blocks)
    assert [t.dim for t in blocks] == dims
    assert [t.depth for t in blocks] == sorted(t.depth for t in blocks) and blocks[-1].depth == 1
    out = encoder.encode_layers(batch, taps)
    assert np.array_equal(out["final"], encoder.encode_images(batch))
    assert len(reference) == len(blocks)
    for tap, expected in zip(blocks, reference, strict=True):
        assert out[tap.name].shape == (len(batch), tap.dim)
        np.testing.assert_allclose(out[tap.name], expected.float().numpy(), atol=1e-5, rtol=1e-5)


def test_timm_vit_blocks_are_the_class_tokens_of_timms_intermediates():
    encoder = create_encoder(_timm_spec("vit_tiny_patch16_224", "projected", 32))
    batch = _batch()
    with torch.inference_mode():
        found = encoder.module.forward_intermediates(
            batch, return_prefix_tokens=True, output_fmt="NLC", intermediates_only=True
        )
    _assert_taps(encoder, batch, [prefix[:, 0] for _, prefix in found], "cls", [192] * 12)


def test_cnn_control_stages_are_global_averages_of_timms_stages():
    encoder = create_encoder(_timm_spec("resnet18", "pooled", 512))
    batch = _batch()
    with torch.inference_mode():
        found = encoder.module.forward_intermediates(batch, indices=4, intermediates_only=True)
    _assert_taps(encoder, batch, [f.mean(dim=(2, 3)) for f in found], "gap", [64, 128, 256, 512])
    assert [t.name for t in encoder.layers()] == [*(f"stage_{i}" for i in range(1, 5)), "final"]


def test_open_clip_blocks_are_open_clips_own_intermediates(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "patch_size": 16},
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 1000,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg).eval()
    folder = tmp_path / "tiny-open-clip"
    folder.mkdir()
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}})
    )
    encoder = create_encoder(f"local:{folder}")
    batch = _batch()
    with torch.inference_mode():
        found = model.visual.forward_intermediates(
            batch, intermediates_only=True, output_fmt="NLC", output_extra_tokens=True
        )
    cls = [prefix[:, 0] for prefix in found["image_intermediates_prefix"]]
    _assert_taps(encoder, batch, cls, "cls", [64] * 3)


def _tiny_hf_clip():
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3}
    config = CLIPConfig(
        text_config={**vision, "num_attention_heads": 2, "vocab_size": 100},
        vision_config={**vision, "num_attention_heads": 2, "image_size": 64, "patch_size": 16},
        projection_dim=24,
    )
    return CLIPModel(config).eval()


def _hf_spec(name: str, embedding: str, dim: int) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        library="transformers",
        architecture=name,
        domain="general",
        subdomain="test",
        embed_dim=dim,
        embedding=embedding,
        preprocessing=_PRE64.model_copy(update={"backend": "transformers"}),
        license="MIT",
    )


def test_transformers_blocks_are_the_hidden_states(tmp_path):
    model = _tiny_hf_clip()
    encoder = HFEncoder(
        _hf_spec("tiny-clip", "projected", 24), model, tmp_path, BuildOptions(), WeightsRef()
    )
    batch = _batch()
    with torch.inference_mode():
        hidden = model.vision_model(pixel_values=batch, output_hidden_states=True).hidden_states
    # the vision tower only: the text tower's 3 layers are never tapped
    _assert_taps(encoder, batch, [h[:, 0] for h in hidden[1:]], "cls", [32] * 3)


def test_transformers_without_a_class_token_pool_the_patch_mean(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(0)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
    config = SiglipConfig(
        text_config={**tower, "num_hidden_layers": 1, "vocab_size": 100},
        vision_config={**tower, "num_hidden_layers": 2, "image_size": 64, "patch_size": 16},
    )
    model = SiglipModel(config).eval()
    spec = _hf_spec("tiny-siglip", "projected", 32)
    encoder = HFEncoder(spec, model, tmp_path, BuildOptions(), WeightsRef())
    batch = _batch()
    with torch.inference_mode():
        hidden = model.vision_model(pixel_values=batch, output_hidden_states=True).hidden_states
    _assert_taps(encoder, batch, [h.mean(dim=1) for h in hidden[1:]], "mean", [32] * 2)


def test_baselines_have_only_the_final_layer():
    encoder = create_encoder("handcrafted")
    assert [t.name for t in encoder.layers()] == ["final"]
    batch = torch.rand(2, 3, 128, 128)
    out = encoder.encode_layers(batch, encoder.layers())
    assert np.array_equal(out["final"], encoder.encode_images(batch))


def test_layer_selections():
    taps = create_encoder(_timm_spec("vit_tiny_patch16_224", "projected", 32)).layers()
    assert len(select_taps(taps, "all")) == 13
    every = [t.name for t in select_taps(taps, {"every": 5})]
    assert every == ["block_5", "block_10", "block_12", "final"]
    assert [t.name for t in select_taps(taps, ["block_3"])] == ["block_3", "final"]
    with pytest.raises(MedprobeError, match="no layer 'stage_9'"):
        select_taps(taps, ["stage_9"], "tiny")


# ---------------------------------------------------------------------------- extraction


@pytest.fixture(scope="module")
def small():
    return synthetic("dermoscopy", n=24, size=64)


@pytest.fixture(scope="module")
def vit():
    return create_encoder(_timm_spec("vit_tiny_patch16_224", "projected", 32))


def test_final_layer_reuses_todays_entry_and_blocks_get_their_own(tmp_path, small, vit):
    store = FeatureStore(tmp_path / "store")
    today = extract(vit, small, cache=store, batch_size=8, show_progress=False)
    features_file = tmp_path / "store" / today.meta["cache_key"][:2] / today.meta["cache_key"]
    before = (features_file / "features.npy").stat().st_mtime_ns
    layers = extract_layers(vit, small, cache=store, batch_size=8, show_progress=False)
    assert layers["final"].meta["cache_key"] == today.meta["cache_key"]
    assert (features_file / "features.npy").stat().st_mtime_ns == before  # not rewritten
    assert np.array_equal(layers["final"].features, today.features)
    keys = {fs.meta["cache_key"] for fs in layers.values()}
    assert len(keys) == 13 and len(store.entries()) == 13
    block = layers["block_6"]
    assert block.features.shape == (24, 192) and block.features.dtype == np.float16
    assert isinstance(block.features, np.memmap)
    assert block.meta["layer_pooling"] == "cls" and block.meta["layer_depth"] == 0.5

    # a fresh store: the layer-wise pass writes the very entry plain extraction reads
    fresh = FeatureStore(tmp_path / "fresh")
    first = extract_layers(vit, small, ["block_2"], cache=fresh, batch_size=8, show_progress=False)
    assert cache_key(vit, small, None, "float32") == first["final"].meta["cache_key"]
    served = extract(vit, small, cache=fresh, batch_size=8, show_progress=False)
    assert np.array_equal(served.features, today.features)
    # a block read in another selection of layers is the same entry
    assert first["block_2"].meta["cache_key"] == layers["block_2"].meta["cache_key"]


def test_killed_layer_extraction_resumes_to_the_same_features(tmp_path, small, vit, monkeypatch):
    reference = extract_layers(vit, small, show_progress=False)
    real = Entry.add_shard
    calls = {"n": 0}

    def dies(self, start, stop, arrays):
        calls["n"] += 1
        if calls["n"] == 13 + 5:  # the second shard: 4 taps are one shard ahead
            raise KeyboardInterrupt
        real(self, start, stop, arrays)

    monkeypatch.setattr(Entry, "add_shard", dies)
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(KeyboardInterrupt):
        extract_layers(vit, small, cache=store, batch_size=4, shard_batches=2, show_progress=False)
    monkeypatch.setattr(Entry, "add_shard", real)
    done = {e.manifest()["info"]["layer"]: e.shards()[-1].stop for e in store.entries()}
    assert sorted(set(done.values())) == [8, 16]  # some entries ahead of the others
    resumed = extract_layers(vit, small, cache=store, batch_size=6, show_progress=False)
    for name, fs in reference.items():
        assert list(resumed[name].ids) == list(fs.ids)
        assert resumed[name].features.dtype == fs.features.dtype
        np.testing.assert_allclose(resumed[name].features, fs.features, rtol=2e-3, atol=2e-3)


# ------------------------------------------------------------------ planted middle signal


class _Stage(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class _Planted(nn.Module):
    """Four stages: the class (a horizontal stripe pattern vs none, equal mean brightness) is
    readable from stage 2 only; stage 3 throws it away, stage 4 and the embedding keep what
    is left (brightness, which carries no class)."""

    def __init__(self):
        super().__init__()
        self.layer1 = _Stage(lambda x: torch.cat([x[:, :1], x[:, :1]], dim=1))
        self.layer2 = _Stage(
            lambda x: torch.cat([(x[:, :1, 1:] - x[:, :1, :-1]).abs(), x[:, 1:, 1:]], dim=1)
        )
        self.layer3 = _Stage(lambda x: torch.cat([x[:, 1:], x[:, 1:]], dim=1))
        self.layer4 = _Stage(lambda x: x * 2.0)

    def forward(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(x)))).mean(dim=(2, 3))


def _stripes_dataset(folder, n_per_class=60):
    rng = np.random.default_rng(0)
    for label in ("plain", "striped"):
        (folder / label).mkdir(parents=True)
        for i in range(n_per_class):
            level = rng.uniform(60, 190)
            image = np.full((32, 32), level)
            if label == "striped":
                image[::2] += 30
                image[1::2] -= 30
            noise = rng.normal(0, 4, image.shape)
            pixels = np.clip(image + noise, 0, 255).astype(np.uint8)
            Image.fromarray(np.stack([pixels] * 3, -1)).save(folder / label / f"{i}.png")
    return open_source("path", folder, seed=0, name="stripes")


def test_a_signal_planted_in_a_middle_stage_is_found_there(tmp_path):
    spec = EncoderSpec(
        name="planted",
        library="timm",
        architecture="planted",
        domain="baseline",
        subdomain="test",
        embed_dim=2,
        embedding="pooled",
        preprocessing=Preprocessing(image_size=32, mean=(0.0,) * 3, std=(1.0,) * 3),
        license="MIT",
    )
    encoder = TorchEncoder(spec, _Planted())
    dataset = _stripes_dataset(tmp_path / "data")
    layers = extract_layers(encoder, dataset, "all", show_progress=False)
    assert list(layers) == ["stage_1", "stage_2", "stage_3", "stage_4", "final"]
    unit = UnitInput(
        features=layers["final"],
        encoder=encoder,
        dataset=dataset,
        context=RowContext.of(encoder, dataset, 0, layers["final"]),
        layers=layers,
    )
    frame = results_frame(layer_probes(unit))
    probe = frame[(frame.analysis == "linear_probe") & (frame.metric == "balanced_accuracy")]
    accuracy = dict(zip(probe.layer, probe.value, strict=True))
    assert accuracy["stage_2"] >= 0.95
    assert max(accuracy[s] for s in ("stage_1", "stage_3", "stage_4")) <= 0.75
    knn = frame[
        (frame.analysis == "knn") & (frame.metric == "balanced_accuracy") & (frame.param_k == 5)
    ]
    assert knn.set_index("layer").value.idxmax() == "stage_2"
    best = frame[frame.analysis == "layer_best"].iloc[0]
    assert best.layer == "stage_2" and best.param_depth == 0.5
    assert best.ci_low > 0.2  # far better than the final embedding, which is at chance
    assert set(frame.layer) == {"stage_1", "stage_2", "stage_3", "stage_4"}


# ---------------------------------------------------------------------------- layer CKA


def test_layer_cka_of_a_model_with_itself_has_a_unit_diagonal(small, vit):
    again = create_encoder(_timm_spec("vit_tiny_patch16_224", "projected", 32))
    other = create_encoder(_timm_spec("vit_tiny_patch16_224", "projected", 32, seed=1))
    sets = {
        name: extract_layers(e, small, {"every": 4}, batch_size=b, show_progress=False)
        for name, e, b in (("a", vit, 8), ("again", again, 5), ("other", other, 8))
    }
    flat = [fs for taps in sets.values() for fs in taps.values()]
    cka = LayerCKA().fit(flat).cka_
    assert cka.shape == (12, 12)
    np.testing.assert_allclose(cka, cka.T)
    np.testing.assert_allclose(np.diag(cka), 1.0, atol=1e-9)
    cross = cka[:4, 4:8]  # the model against a second extraction of itself
    np.testing.assert_allclose(np.diag(cross), 1.0, atol=2e-3)  # float16 storage
    # each layer is most like itself (random ViT blocks are alike: the residual stream)
    assert np.diag(cross).min() > cross[~np.eye(4, dtype=bool)].max()
    assert (np.diag(cka[:4, 8:]) < np.diag(cross) - 0.01).all()  # another initialisation

    def unit(encoder, taps):
        return UnitInput(
            features=taps["final"],
            encoder=encoder,
            dataset=small,
            context=RowContext.of(encoder, small, 0, taps["final"]),
            layers=taps,
        )

    rows = results_frame(
        layer_similarity(
            DatasetInput(small.name, [unit(vit, sets["a"]), unit(other, sets["other"])])
        )
    )
    same = rows[rows.encoder_b == rows.encoder]
    assert len(same) == 2 * (4 * 5 // 2) and len(rows) == len(same) + 16
    diagonal = same[same.layer == same.layer_b]
    np.testing.assert_allclose(diagonal.value, 1.0, atol=1e-9)
    assert rows.ci_low.le(rows.value).all() and rows.value.le(rows.ci_high).all()


# ------------------------------------------------------------------------- study and CLI


def test_study_layers_add_rows_and_leave_final_rows_unchanged(tmp_path):
    from medprobe.encoders import register
    from medprobe.study.config import StudyConfig
    from medprobe.study.runner import Plan, run_models

    register(
        _timm_spec("vit_tiny_patch16_224", "projected", 32).model_copy(
            update={"name": "test-tiny-vit-layers"}
        )
    )
    config = StudyConfig.model_validate(
        {
            "name": "layers",
            "models": ["pixels", {"name": "test-tiny-vit-layers", "layers": {"every": 6}}],
            "datasets": [{"name": "s", "synthetic": {"kind": "dermoscopy", "n": 40, "size": 64}}],
            "analyses": ["separability", "knn", "linear_probe", "similarity"],
            "cache": str(tmp_path / "store"),
        }
    )
    with pytest.raises(Exception, match="every"):
        StudyConfig.model_validate({**config.model_dump(), "layers": {"every": 0}})
    datasets = {"s": synthetic("dermoscopy", n=40, size=64, name="s")}
    analyses = ("separability", "knn", "linear_probe", "similarity")
    plain = Plan(analyses=analyses, embeddings=(), store=FeatureStore(tmp_path / "store"))
    layered = replace(Plan.of(config), embeddings=())
    before, _ = run_models(config.models, datasets, plain, show_progress=False)
    after, _ = run_models(config.models, datasets, layered, show_progress=False)
    old, new = before.results, after.results
    assert set(old.layer) == {"final"}
    finals = new[(new.layer == "final") & new.analysis.isin(old.analysis.unique())]
    columns = [
        "encoder",
        "encoder_b",
        "analysis",
        "metric",
        "param_k",
        "value",
        "ci_low",
        "ci_high",
    ]
    pd.testing.assert_frame_equal(
        finals[columns].reset_index(drop=True), old[columns].reset_index(drop=True)
    )
    blocks = new[new.layer.isin(["block_6", "block_12"])]
    assert set(blocks.encoder) == {"test-tiny-vit-layers"}
    assert {"separability", "knn", "linear_probe", "layer_best", "layer_similarity"} <= set(
        new.analysis
    ) and set(blocks.param_depth.dropna()) == {0.5, 1.0}
    cka = new[new.analysis == "layer_similarity"]
    pairs = set(zip(cka.encoder, cka.encoder_b, strict=True))
    assert pairs == {
        ("pixels", "pixels"),
        ("pixels", "test-tiny-vit-layers"),
        ("test-tiny-vit-layers", "test-tiny-vit-layers"),
    }


def test_cli_lists_the_layers(capsys):
    from medprobe.cli import main

    assert main(["layers", "random-resnet50"]) == 0
    out = capsys.readouterr().out
    for name, dim in (("stage_1", 256), ("stage_4", 2048), ("final", 2048)):
        assert name in out and str(dim) in out
    assert "gap: global average" in out
