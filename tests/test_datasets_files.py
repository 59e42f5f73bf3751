"""Folder and manifest loaders, splits and prompts, on small files made here."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medprobe.datasets import assign_splits, image_folder, manifest, prompts_for
from medprobe.datasets.base import Record
from medprobe.errors import MedprobeError


def _write(path, colour=(200, 80, 40), size=(16, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def folder(tmp_path):
    for cls in ("benign", "malignant"):
        for i in range(5):
            _write(tmp_path / cls / f"{i}.png")
    (tmp_path / "empty_class").mkdir()
    return tmp_path


def test_image_folder_drops_empty_classes_and_says_so(folder):
    ds = image_folder(folder, modality="dermoscopy")
    assert ds.class_names == ["benign", "malignant"]
    assert ds.problems == ["class 'empty_class' has no images"]
    assert ds.class_counts() == {"benign": 5, "malignant": 5}


def test_fewer_than_two_classes_is_an_error(tmp_path):
    for i in range(3):
        _write(tmp_path / "only" / f"{i}.png")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(MedprobeError, match="fewer than 2 classes"):
        image_folder(tmp_path)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(MedprobeError, match="does not exist"):
        image_folder(tmp_path / "nope")


def test_fingerprint_changes_when_one_image_changes(folder):
    before = image_folder(folder).fingerprint()
    assert image_folder(folder).fingerprint() == before
    _write(folder / "benign" / "3.png", colour=(1, 2, 3), size=(17, 12))
    assert image_folder(folder).fingerprint() != before
    content = image_folder(folder, fingerprint_mode="content").fingerprint()
    assert image_folder(folder, fingerprint_mode="content").fingerprint() == content


def test_manifest_paths_splits_and_meta(tmp_path):
    for i in range(6):
        _write(tmp_path / "img" / f"{i}.png")
    table = pd.DataFrame(
        {
            "path": [f"img/{i}.png" for i in range(6)],
            "label": ["a", "b"] * 3,
            "split": ["train", "train", "train", "train", "test", "test"],
            "site": ["x", "y", "x", "y", "x", "y"],
        }
    )
    table.to_csv(tmp_path / "m.csv", index=False)
    ds = manifest(tmp_path / "m.csv", modality="chest x-ray")
    assert [r.split for r in ds] == list(table.split)
    assert [r.meta["site"] for r in ds] == list(table.site)
    assert "chest X-ray" in ds.prompts[0]
    table.to_parquet(tmp_path / "m.parquet")
    assert len(manifest(tmp_path / "m.parquet")) == 6


def test_manifest_rejects_paths_that_escape(tmp_path):
    (tmp_path / "data").mkdir()
    _write(tmp_path / "outside.png")
    pd.DataFrame({"path": ["../outside.png", "../outside.png"], "label": ["a", "b"]}).to_csv(
        tmp_path / "data" / "m.csv", index=False
    )
    with pytest.raises(MedprobeError, match="escapes"):
        manifest(tmp_path / "data" / "m.csv")
    pd.DataFrame({"path": [str(tmp_path / "outside.png")] * 2, "label": ["a", "b"]}).to_csv(
        tmp_path / "data" / "abs.csv", index=False
    )
    with pytest.raises(MedprobeError, match="escapes"):
        manifest(tmp_path / "data" / "abs.csv")


def test_manifest_missing_column(tmp_path):
    pd.DataFrame({"file": ["a.png"], "label": ["x"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(MedprobeError, match="no column 'path'"):
        manifest(tmp_path / "m.csv")


def test_labels_with_odd_characters(tmp_path):
    labels = ["naevus <benign> & co", "mélanome/’malin’"]
    for i in range(4):
        _write(tmp_path / f"{i}.png")
    pd.DataFrame({"path": [f"{i}.png" for i in range(4)], "label": labels * 2}).to_csv(
        tmp_path / "m.csv", index=False
    )
    ds = manifest(tmp_path / "m.csv")
    assert set(ds.class_names) == set(labels)


def test_splits_are_stratified_deterministic_and_stable():
    records = [Record(f"img{i}", i % 3, "", i) for i in range(90)]
    split = assign_splits(records, test_fraction=0.3, val_fraction=0.1, seed=0)
    assert split == assign_splits(records, test_fraction=0.3, val_fraction=0.1, seed=0)
    for label in range(3):
        members = [r.split for r in split if r.label == label]
        assert members.count("test") == 9 and members.count("val") == 3
    # Adding images does not move existing ones between splits.
    more = assign_splits(
        [*records, Record("extra", 0, "", 90)], test_fraction=0.3, val_fraction=0.1, seed=0
    )
    moved = sum(a.split != b.split for a, b in zip(split, more, strict=False))
    assert moved <= 3
    reseeded = assign_splits(records, test_fraction=0.3, seed=1)
    assert [r.split for r in reseeded] != [r.split for r in split]
    tiny = assign_splits([Record("a", 0, "", 0), Record("b", 0, "", 1)], test_fraction=0.1)
    assert sorted(r.split for r in tiny) == ["test", "train"]


def test_prompts():
    for modality in (
        "dermoscopy",
        "breast ultrasound",
        "chest x-ray",
        "brain mri",
        "histopathology",
        "fundus",
        "colonoscopy",
    ):
        templates = prompts_for(modality)
        assert len(templates) >= 3 and all("{}" in t for t in templates)
    assert prompts_for("CXR") == prompts_for("chest x-ray")
    assert prompts_for("dermoscopy", ["a photo of {}"]) == ["a photo of {}"]
    with pytest.raises(ValueError, match="contain"):
        prompts_for("dermoscopy", ["no placeholder"])
    assert prompts_for("something new") == prompts_for("unknown")


def test_medmnist_synthetic_npz(tmp_path):
    from medprobe.datasets import medmnist

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "toymnist_64.npz",
        train_images=rng.integers(0, 255, (10, 64, 64, 3), dtype=np.uint8),
        train_labels=np.array([0, 1] * 5).reshape(-1, 1),
        test_images=rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8),
        test_labels=np.array([0, 1, 2, 2]).reshape(-1, 1),
    )
    ds = medmnist(tmp_path / "toymnist_64.npz", class_names=["x", "y", "z"])
    assert ds.class_counts("test") == {"x": 1, "y": 1, "z": 2}
    assert ds.load_image(ds.records[0]).size == (64, 64)
    np.savez(
        tmp_path / "multi.npz",
        train_images=np.zeros((2, 8, 8), np.uint8),
        train_labels=np.zeros((2, 3)),
    )
    with pytest.raises(MedprobeError, match="multi-label"):
        medmnist(tmp_path / "multi.npz")


def _manifest_folder(tmp_path, rows, columns=("path", "label", "split")):
    for row in rows:
        if not (tmp_path / row[0]).exists():
            _write(tmp_path / row[0], colour=(len(row[0]) * 7 % 255, 10, 10))
    path = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def test_manifest_split_values_are_normalised_or_refused(tmp_path):
    rows = [
        (f"i/{k}.png", "a" if k % 2 else "b", s)
        for k, s in enumerate(["Train ", "TEST", "validation", "train", "test", "Valid"])
    ]
    ds = manifest(_manifest_folder(tmp_path, rows))
    assert [r.split for r in ds.records] == ["train", "test", "val", "train", "test", "val"]
    bad = [(f"i/{k}.png", "a" if k % 2 else "b", s) for k, s in enumerate(["train", "tset"])]
    with pytest.raises(MedprobeError, match=r"tset.*rows 3"):
        manifest(_manifest_folder(tmp_path / "bad", bad))
    partial = [(f"i/{k}.png", "a" if k % 2 else "b", s) for k, s in enumerate(["train", ""])]
    with pytest.raises(MedprobeError, match="no split while others do"):
        manifest(_manifest_folder(tmp_path / "partial", partial))


def test_manifest_rows_left_out_with_their_reasons(tmp_path):
    rows = [
        ("i/0.png", "a", ""),
        ("i/1.png", "b", ""),
        ("i/2.png", "", ""),  # empty label
        ("i/0.png", "a", ""),  # listed again, same label
        ("i/3.png", "a", ""),
        ("i/3.png", "b", ""),  # one file, two labels
        ("i/4.png", "b", ""),
        ("i/5.png", "a", ""),
    ]
    ds = manifest(_manifest_folder(tmp_path, rows))
    assert sorted(r.id for r in ds.records) == ["i/0.png", "i/1.png", "i/4.png", "i/5.png"]
    reasons = {r.id: r.reason for r in ds.rejected}
    assert reasons["i/2.png"] == "manifest row 4: empty label"
    assert reasons["i/0.png"] == "listed again in row 5"
    assert "labels 'a', 'b'" in reasons["i/3.png"]
    assert ds.class_names == ["a", "b"]  # no class named ""


def test_group_column_keeps_each_group_on_one_side(tmp_path):
    rows = [(f"i/{k}.png", "a" if k % 2 else "b", f"p{k // 4}") for k in range(80)]
    path = _manifest_folder(tmp_path, rows, ("path", "label", "patient"))
    ds = manifest(path, group_column="patient")
    sides = {}
    for r in ds.records:
        sides.setdefault(r.group, set()).add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    assert {"train", "test"} == {s for v in sides.values() for s in v}
    test_share = sum(r.split == "test" for r in ds.records) / len(ds.records)
    assert 0.2 <= test_share <= 0.4
    assert ds.unit == "patient"
    # a given split that puts one patient on both sides is reported
    given = [
        (f"i/{k}.png", "a" if k % 2 else "b", "p0", "train" if k else "test") for k in range(6)
    ]
    folder = tmp_path / "given"
    path = _manifest_folder(folder, given, ("path", "label", "patient", "split"))
    assert any("both sides" in p for p in manifest(path, group_column="patient").problems)


def test_renamed_classes_reuse_features_and_keep_the_new_names(tmp_path):
    from medprobe.encoders import create_encoder
    from medprobe.features import extract

    rows = [(f"i/{k}.png", "benign" if k % 2 else "malignant", "") for k in range(12)]
    path = _manifest_folder(tmp_path, rows)
    encoder = create_encoder("handcrafted")
    first = extract(encoder, manifest(path, name="one"), cache=tmp_path / "c", show_progress=False)
    renamed = pd.read_csv(path).assign(
        label=lambda t: t.label.map({"benign": "B", "malignant": "M"})
    )
    renamed.to_csv(path, index=False)
    again = extract(
        encoder,
        manifest(path, name="two", modality="dermoscopy"),
        cache=tmp_path / "c",
        show_progress=False,
    )
    assert again.meta["cache_key"] == first.meta["cache_key"]  # same images: features reused
    assert again.dataset == "two" and again.class_names == ["B", "M"]
    assert again.meta["modality"] == "dermoscopy"
