"""WebDataset tar shards and saved Hugging Face datasets, built here in a tmp dir."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from medprobe.datasets import image_folder, open_source
from medprobe.encoders import create_encoder
from medprobe.errors import MedprobeError
from medprobe.features import extract


def _png(k: int) -> bytes:
    rng = np.random.default_rng(k)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(tmp_path):
    """Two shards of 12 samples (labels in .cls, lesion and split in .json), one corrupt
    image, one sample without a label, one label file without an image; and the same good
    images as class folders."""
    folder = tmp_path / "folder"
    for s in range(2):
        with tarfile.open(tmp_path / f"part-{s:03d}.tar", "w") as tar:
            for k in range(12):
                key, n = f"case{s}_{k:02d}", s * 12 + k
                label = n % 2
                image = b"\x89PNG broken" if n == 5 else _png(n)
                _add(tar, f"{key}.png", image)
                if n != 7:
                    _add(tar, f"{key}.cls", str(label).encode())
                split = "Train" if k < 8 else "TEST"
                _add(
                    tar,
                    f"{key}.json",
                    json.dumps({"lesion": f"L{n // 2}", "split": split}).encode(),
                )
                if n not in (5, 7):
                    path = folder / ["benign", "malignant"][label] / f"{n:03d}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(image)
            _add(tar, "orphan.cls", b"1")
    return tmp_path / "part-{000..001}.tar", folder


def test_shards_round_trip_with_stable_ids(shards):
    pattern, _ = shards
    ds = open_source(
        "webdataset", pattern, class_names=["benign", "malignant"], group_column="lesion"
    )
    assert ds.class_names == ["benign", "malignant"]
    assert len(ds) == 23  # 24 samples, one without a label
    reasons = {r.id: r.reason for r in ds.rejected}
    assert "no label" in reasons["part-000.tar/case0_07"]
    assert "no image" in reasons["part-000.tar/orphan"] and "part-001.tar/orphan" in reasons
    first = ds.records[0]
    assert first.id == "part-000.tar/case0_00" and first.group == "L0" and first.split == "train"
    assert {r.split for r in ds.records} == {"train", "test"}
    again = open_source("webdataset", pattern, class_names=["benign", "malignant"])
    assert [r.id for r in again.records] == [r.id for r in ds.records]
    assert again.image_fingerprint() == ds.image_fingerprint()
    assert np.array_equal(
        np.asarray(ds.load_image(ds.records[3])),
        np.asarray(Image.open(io.BytesIO(_png(3))).convert("RGB")),
    )


def test_a_corrupt_record_in_a_shard_is_reported_not_fatal(shards, tmp_path):
    pattern, folder = shards
    encoder = create_encoder("handcrafted")
    ds = open_source("webdataset", pattern, class_names=["benign", "malignant"])
    fs = extract(
        encoder, ds, cache=tmp_path / "c", batch_size=4, shard_batches=1, show_progress=False
    )
    assert len(fs) == 22
    skipped = {s.id: s.reason for s in fs.skipped}
    assert "not an image" in skipped["part-000.tar/case0_05"]
    assert "no label" in skipped["part-000.tar/case0_07"]  # rejected samples are listed too
    # the same images read from class folders give the same features
    plain = extract(encoder, image_folder(folder), show_progress=False)

    def number(image_id: str) -> int:  # part-00S.tar/caseS_KK or <class>/NNN.png
        if image_id.startswith("part-"):
            shard, key = image_id.split("/")
            return 12 * int(shard[5:8]) + int(key.split("_")[1])
        return int(image_id.split("/")[1][:3])

    ours = {number(i): f for i, f in zip(fs.ids, np.asarray(fs.features), strict=True)}
    theirs = {number(i): f for i, f in zip(plain.ids, np.asarray(plain.features), strict=True)}
    assert ours.keys() == theirs.keys()
    for n, features in ours.items():
        np.testing.assert_allclose(features, theirs[n], rtol=1e-6)


def test_compressed_or_missing_shards_are_one_clear_line(tmp_path):
    with pytest.raises(MedprobeError, match="not found"):
        open_source("webdataset", tmp_path / "nope-{0..1}.tar")
    (tmp_path / "gz.tar").write_bytes(b"\x1f\x8b" + b"\0" * 600)
    with pytest.raises(MedprobeError, match="uncompressed tar"):
        open_source("webdataset", tmp_path / "gz.tar")


def _hf_table(n: int, labels=None):
    import datasets

    images = [Image.fromarray(np.full((16, 16, 3), 5 * i, np.uint8)) for i in range(n)]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])}
    )
    return datasets.Dataset.from_dict(
        {"image": images, "label": labels or [i % 3 for i in range(n)]}, features=features
    )


def test_saved_hf_dataset_round_trips(tmp_path):
    import datasets

    table = _hf_table(30)
    split = table.train_test_split(test_size=0.3, seed=0)
    datasets.DatasetDict({"train": split["train"], "validation": split["test"]}).save_to_disk(
        str(tmp_path / "saved")
    )
    ds = open_source("hf_dataset", {"path": tmp_path / "saved"}, name="saved")
    assert ds.class_names == ["a", "b", "c"] and len(ds) == 30
    assert {r.split for r in ds.records} == {"train", "val"}
    record = next(r for r in ds.records if r.id == "validation/0")
    assert ds.load_image(record).size == (16, 16)
    fs = extract(create_encoder("handcrafted"), ds, cache=tmp_path / "c", show_progress=False)
    assert len(fs) == 30 and fs.class_names == ["a", "b", "c"]
    # one split only: medprobe draws its own train/test split
    only = open_source("hf_dataset", {"path": tmp_path / "saved", "split": "train"})
    assert {r.split for r in only.records} == {"train", "test"}
    with pytest.raises(MedprobeError, match="no split"):
        open_source("hf_dataset", {"path": tmp_path / "saved", "split": "test"})


def test_parquet_files_are_an_hf_dataset(tmp_path):
    table = _hf_table(24)
    table.to_parquet(str(tmp_path / "data.parquet"))
    ds = open_source("hf_dataset", {"path": tmp_path / "data.parquet"})
    assert len(ds) == 24 and ds.class_names == ["a", "b", "c"]
    assert np.asarray(ds.load_image(ds.records[2]))[0, 0, 0] == 10
