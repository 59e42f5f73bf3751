"""The feature store: cache hits, keys, resume after SIGKILL, concurrency, Ray, verification."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medprobe.datasets import image_folder, synthetic
from medprobe.encoders import create_encoder, get_spec
from medprobe.features import extract
from medprobe.features.extraction import cache_key, choose_workers
from medprobe.features.store import FeatureStore

HERE = Path(__file__).parent
TINY_VIT = get_spec("random-vit").model_copy(
    update={
        "name": "tiny-random-vit",
        "aliases": (),
        "architecture": "vit_tiny_patch16_224",
        "embed_dim": 64,
        "preprocessing": get_spec("random-vit").preprocessing.model_copy(update={"image_size": 64}),
    }
)


class CountingOverlay:
    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, image, record, index):
        return image

    def describe(self):
        return {"kind": "test", "text": self.text}


def test_cache_hit_does_not_run_the_encoder(tmp_path):
    ds = synthetic("dermoscopy", 24, size=48)
    encoder = create_encoder("handcrafted")
    first = extract(encoder, ds, cache=tmp_path, show_progress=False)

    def boom(batch):
        raise AssertionError("the encoder ran on a cache hit")

    encoder.encode_images = boom
    again = extract(encoder, ds, cache=tmp_path, show_progress=False)
    assert isinstance(again.features, np.memmap)
    assert np.array_equal(first.features, again.features)
    assert list(first.ids) == list(again.ids)


def test_key_changes_with_image_revision_preprocessing_and_overlay(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            (tmp_path / cls).mkdir(exist_ok=True)
            Image.new("RGB", (20, 20), (10 * i, 50, 90)).save(tmp_path / cls / f"{i}.png")
    ds = image_folder(tmp_path)
    encoder = create_encoder(TINY_VIT)
    base = cache_key(encoder, ds, None, "float32")
    assert cache_key(encoder, image_folder(tmp_path), None, "float32") == base
    time.sleep(0.01)
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "a" / "1.png")
    assert cache_key(encoder, image_folder(tmp_path), None, "float32") != base
    ds = image_folder(tmp_path)
    base = cache_key(encoder, ds, None, "float32")
    revised = create_encoder(TINY_VIT.model_copy(update={"revision": "abc123"}))
    assert cache_key(revised, ds, None, "float32") != base
    bigger = TINY_VIT.preprocessing.model_copy(update={"image_size": 96})
    assert (
        cache_key(
            create_encoder(TINY_VIT.model_copy(update={"preprocessing": bigger})),
            ds,
            None,
            "float32",
        )
        != base
    )
    resized = TINY_VIT.preprocessing.model_copy(update={"mean": (0.5, 0.5, 0.5)})
    assert (
        cache_key(
            create_encoder(TINY_VIT.model_copy(update={"preprocessing": resized})),
            ds,
            None,
            "float32",
        )
        != base
    )
    assert cache_key(encoder, ds, CountingOverlay("L"), "float32") != base
    assert cache_key(encoder, ds, CountingOverlay("L"), "float32") != cache_key(
        encoder, ds, CountingOverlay("R"), "float32"
    )
    assert cache_key(encoder, ds, None, "float16") != base


def _worker(cache, n, pause=0.0):
    return subprocess.Popen(
        [
            sys.executable,
            str(HERE / "extract_worker.py"),
            str(cache),
            TINY_VIT.model_dump_json(),
            str(n),
            str(pause),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _shards_written(cache: Path) -> int:
    manifests = list(cache.glob("*/*/manifest.json"))
    if not manifests:
        return 0
    try:
        return len(json.loads(manifests[0].read_text()).get("shards", []))
    except json.JSONDecodeError:
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal(tmp_path):
    n = 40  # 10 shards of 4 images
    victim = _worker(tmp_path / "killed", n, pause=0.3)
    deadline = time.time() + 120
    while _shards_written(tmp_path / "killed") < 3 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done = _shards_written(tmp_path / "killed")
    assert 3 <= done < n // 4, "the run must have been killed part-way"

    resumed = _worker(tmp_path / "killed", n)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    fresh = _worker(tmp_path / "fresh", n)
    out2, err2 = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err2
    assert out.split()[0] == out2.split()[0]  # same key

    a = FeatureStore(tmp_path / "killed").entries()[0].load()
    b = FeatureStore(tmp_path / "fresh").entries()[0].load()
    assert a[0].tobytes() == b[0].tobytes()
    assert list(a[1]) == list(b[1]) and len(a[1]) == n


@pytest.mark.slow
def test_two_processes_on_one_key_give_one_valid_entry(tmp_path):
    procs = [_worker(tmp_path, 24, pause=0.05) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
    keys = {r[0].split()[0] for r in results}
    assert len(keys) == 1
    store = FeatureStore(tmp_path)
    assert len(store.entries()) == 1
    assert store.verify(store.entries()[0]) == []
    features, ids, _ = store.entries()[0].load()
    assert len(features) == len(ids) == 24


def test_verify_finds_corruption_and_float16(tmp_path):
    ds = synthetic("ultrasound", 16, size=48)
    fs = extract(
        create_encoder("handcrafted"), ds, cache=tmp_path, dtype="float16", show_progress=False
    )
    assert fs.features.dtype == np.float16
    store = FeatureStore(tmp_path)
    entry = store.entries()[0]
    assert store.verify(entry) == []
    with open(entry.path / "features.npy", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\xff\xff\xff\xff")
    assert any("checksum mismatch" in p for p in store.verify(entry))
    store.remove(entry)
    assert store.entries() == []


def test_bad_images_are_stored_with_their_reasons(tmp_path):
    for cls in ("x", "y"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "d" / cls / f"{i}.png")
        (tmp_path / "d" / cls / "broken.png").write_bytes(b"")
    fs = extract(
        create_encoder("handcrafted"),
        image_folder(tmp_path / "d"),
        cache=tmp_path / "c",
        batch_size=3,
        shard_batches=1,
        show_progress=False,
    )
    assert len(fs) == 8
    assert {s.id for s in fs.skipped} == {"x/broken.png", "y/broken.png"}
    assert all("empty file" in s.reason for s in fs.skipped)


@pytest.mark.slow
def test_ray_engine_matches_local(tmp_path):
    """Ray actors rebuild the encoder from its recipe, device and precision included."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = synthetic("dermoscopy", 20, size=64)
        runs = {}
        for engine in ("local", "ray"):
            encoder = create_encoder(TINY_VIT, device="cpu", precision="bf16")
            runs[engine] = extract(
                encoder,
                ds,
                cache=tmp_path / engine,
                batch_size=4,
                engine=engine,
                show_progress=False,
            )
        local, remote = runs["local"], runs["ray"]
        assert list(local.ids) == list(remote.ids)
        np.testing.assert_array_equal(np.asarray(local.features), np.asarray(remote.features))
        assert local.meta["cache_key"] == remote.meta["cache_key"]
        fp32 = extract(create_encoder(TINY_VIT), ds, batch_size=4, show_progress=False)
        assert not np.array_equal(fp32.features, np.asarray(remote.features))  # bf16 was carried
        fitted = extract(create_encoder("pixels"), ds, engine="ray", show_progress=False)
        np.testing.assert_allclose(
            fitted.features,
            extract(create_encoder("pixels"), ds, show_progress=False).features,
            atol=1e-5,
        )
    finally:
        ray.shutdown()


def test_encoders_carry_a_recipe_that_rebuilds_them():
    encoder = create_encoder(TINY_VIT, precision="fp16")
    again = create_encoder(**encoder.recipe)
    assert again.precision == "fp16"
    assert again.identity() == encoder.identity()
    batch = encoder.normalize(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert np.array_equal(encoder.encode_images(batch), again.encode_images(batch))


def test_worker_count_follows_the_bottleneck():
    # decode-bound (small model, big JPEGs) on 2 cores: both cores decode
    assert choose_workers(0.010, 0.001, cores=2) == 2
    # model-bound: decoding in a worker would take a core from the model
    assert choose_workers(0.001, 0.010, cores=2) == 0
    # balanced on 8 cores: some decoding workers, never more than 8
    assert 0 < choose_workers(0.004, 0.001, cores=8) <= 8
    assert choose_workers(1.0, 1e-6, cores=64) == 8
