"""Device and precision: built into the encoder, part of its identity and of every cache key,
carried by its recipe, recorded in run.json and in every result row."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from medprobe.analysis.rows import read_results
from medprobe.datasets import synthetic
from medprobe.encoders import create_encoder
from medprobe.errors import MedprobeError
from medprobe.features import extract
from medprobe.features.extraction import cache_key
from medprobe.features.store import FeatureStore
from medprobe.study.config import load_config
from medprobe.study.runner import run_study
from test_extract_store import TINY_VIT


def test_the_model_is_built_cast_and_the_encoder_cannot_be_changed_after():
    encoder = create_encoder(TINY_VIT, precision="bf16")
    assert encoder.precision == "bf16" and encoder.device == torch.device("cpu")
    assert {p.dtype for p in encoder.module.parameters()} == {torch.bfloat16}
    for field in ("precision", "device", "weights_source", "weights_digest", "spec", "recipe"):
        with pytest.raises(AttributeError):
            setattr(encoder, field, None)
    assert encoder.recipe["precision"] == "bf16" and encoder.recipe["device"] == "cpu"


def test_bf16_runs_for_real_on_the_cpu_and_changes_identity_and_cache_key():
    ds = synthetic("dermoscopy", 8, size=64)
    fp32, bf16, fp16 = (create_encoder(TINY_VIT, precision=p) for p in ("fp32", "bf16", "fp16"))
    keys = {cache_key(e, ds, None, "float32") for e in (fp32, bf16, fp16)}
    assert len(keys) == 3
    assert len({e.identity() for e in (fp32, bf16, fp16)}) == 3
    batch = fp32.normalize(torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8))
    a, b = fp32.encode_images(batch), bf16.encode_images(batch)
    assert a.dtype == b.dtype == np.float32
    assert not np.array_equal(a, b)  # bf16 really computed...
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99  # ...on the same weights


def test_a_cached_entry_is_never_reused_across_precisions(tmp_path, monkeypatch):
    ds = synthetic("dermoscopy", 12, size=64)
    first = extract(create_encoder(TINY_VIT), ds, cache=tmp_path, show_progress=False)
    bf16 = create_encoder(TINY_VIT, precision="bf16")
    calls = []
    real = bf16.encode_images
    monkeypatch.setattr(bf16, "encode_images", lambda b: calls.append(len(b)) or real(b))
    second = extract(bf16, ds, cache=tmp_path, show_progress=False)
    assert sum(calls) == len(ds)  # the bf16 extraction ran, on every image
    assert len(FeatureStore(tmp_path).entries()) == 2
    assert first.meta["cache_key"] != second.meta["cache_key"]
    assert not np.array_equal(np.asarray(first.features), np.asarray(second.features))


def test_conv_nets_run_channels_last_with_the_layout_in_their_identity(monkeypatch):
    import medprobe.encoders.base as base
    from medprobe.encoders import get_spec

    spec = get_spec("random-resnet50").model_copy(
        update={"name": "tiny-mobilenet", "aliases": (), "architecture": "mobilenetv3_small_050"}
    )
    encoder = create_encoder(spec)
    convs = [m for m in encoder.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    seen = []
    convs[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    batch = encoder.normalize(torch.randint(0, 255, (3, 3, 64, 64), dtype=torch.uint8))
    ours = encoder.encode_images(batch)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(base, "LAYOUT", torch.contiguous_format)
    nchw = create_encoder(spec)
    assert not nchw.module.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert nchw.identity() != encoder.identity()  # other kernels: another cache key
    np.testing.assert_allclose(ours, nchw.encode_images(batch), rtol=1e-4, atol=1e-5)


def test_batches_are_stacked_channels_last_and_normalised_as_the_textbook_says():
    from medprobe.encoders.transforms import normalize
    from medprobe.features.extraction import ExtractJob

    encoder = create_encoder(TINY_VIT)
    ds = synthetic("dermoscopy", 5, size=64)
    ((_, batch, _),) = ExtractJob(encoder, ds).preprocessed(range(5))
    assert batch.dtype == torch.uint8 and batch.is_contiguous(memory_format=torch.channels_last)
    pre = encoder.spec.preprocessing
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (pre.mean, pre.std))
    ours = normalize(batch, pre)
    assert ours.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours, (batch.float() / 255 - mean) / std, rtol=0, atol=1e-6)
    floats = batch.float()
    normalize(floats, pre)
    assert torch.equal(floats, batch.float())  # a float input is not changed in place


def test_baselines_compute_in_fp32_only():
    with pytest.raises(MedprobeError, match="pixels computes in fp32 only"):
        create_encoder("pixels", precision="bf16")
    assert create_encoder("pixels", device="auto").device == torch.device("cpu")
    with pytest.raises(MedprobeError, match="precision must be"):
        create_encoder(TINY_VIT, precision="fp8")
    with pytest.raises(MedprobeError, match="device must be"):
        create_encoder(TINY_VIT, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MedprobeError, match="no CUDA GPU"):
            create_encoder(TINY_VIT, device="cuda:0")


def _tiny_timm_folder(folder, arch):
    import timm

    model = timm.create_model(arch, num_classes=0, pretrained=False)
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)
    return f"local:{folder}"


def test_a_study_records_device_and_precision_in_run_json_and_rows(tmp_path):
    vit = _tiny_timm_folder(tmp_path / "tiny-vit", "vit_tiny_patch16_224")
    cnn = _tiny_timm_folder(tmp_path / "tiny-cnn", "resnet18")
    study = {
        "name": "bf16 study",
        "device": "cpu",
        "precision": "bf16",
        "models": [vit, "pixels", {"name": cnn, "precision": "fp16"}],
        "datasets": [{"name": "d", "synthetic": {"kind": "dermoscopy", "n": 20, "size": 64}}],
        "analyses": ["separability"],
        "cache": str(tmp_path / "cache"),
        "thumbnails": 0,
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    config = load_config(tmp_path / "study.yaml")
    run_study(config, tmp_path / "out", show_progress=False)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert (run["config"]["device"], run["config"]["precision"]) == ("cpu", "bf16")
    recorded = {e["encoder"]: (e["device"], e["precision"]) for e in run["encoders"]}
    # The study-level precision applies where it can; a model's own setting wins.
    assert recorded == {
        "tiny-vit": ("cpu", "bf16"),
        "pixels": ("cpu", "fp32"),
        "tiny-cnn": ("cpu", "fp16"),
    }
    rows = read_results(tmp_path / "out" / "results.csv")
    assert not rows.empty and (rows.analysis != "error").all()
    for name, (device, precision) in recorded.items():
        mine = rows[rows.encoder == name]
        assert set(mine.param_precision) == {precision} and set(mine.param_device) == {device}


def test_cli_overrides_are_validated(tmp_path):
    config = load_config("demo").with_overrides(device="cpu", precision="fp16")
    assert (config.device, config.precision) == ("cpu", "fp16")
    with pytest.raises(MedprobeError, match="--precision"):
        load_config("demo").with_overrides(precision="int8")
    with pytest.raises(MedprobeError, match="--device"):
        load_config("demo").with_overrides(device="gpu")
