"""Every dataset in ../shared/data loads with the class counts its SOURCES.md gives."""

import numpy as np
import pytest

from medprobe.datasets import image_folder, manifest, medmnist, open_dataset

MEDSAMPLES = {
    "ham10000_600x450": {"akiec": 2, "bcc": 9, "bkl": 15, "df": 3, "mel": 9, "nv": 15, "vasc": 3},
    "ham10000_224": {c: 42 for c in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")},
    "busi_256": {"benign": 60, "malignant": 60, "normal": 60},
    "kermany_pediatric_cxr_224": {"NORMAL": 60, "PNEUMONIA": 60},
    "covid19_radiography_224": {"COVID": 60, "Normal": 60},
    "lc25000_lung_histopathology_224": {"lung_aca": 60, "lung_n": 60, "lung_scc": 60},
    "odir_fundus_400": {"cataract": 60, "glaucoma": 60, "normal": 60},
}
MODALITY = {
    "ham10000_600x450": "dermoscopy",
    "busi_256": "breast ultrasound",
    "lc25000_lung_histopathology_224": "histopathology",
}


@pytest.mark.parametrize("name", sorted(MEDSAMPLES))
def test_medsamples_as_image_folders(shared_data, name):
    ds = image_folder(shared_data / "medsamples" / name)
    assert ds.class_counts() == MEDSAMPLES[name]
    assert ds.problems == []
    # No split on disk: a stratified one is assigned, every class in both train and test.
    for cls in ds.class_names:
        assert ds.class_counts("train")[cls] >= 1 and ds.class_counts("test")[cls] >= 1
    record = ds.records[0]
    assert ds.load_image(record).mode == "RGB"


@pytest.mark.parametrize("name", sorted(MEDSAMPLES))
def test_medsamples_via_manifest(shared_data, name):
    ds = manifest(shared_data / "medsamples" / "MANIFEST.csv", where={"dataset": name})
    assert ds.class_counts() == MEDSAMPLES[name]
    assert ds.modality != "unknown"
    assert {"source_repo", "source_commit"} <= set(ds.records[0].meta)
    folder = image_folder(shared_data / "medsamples" / name)
    assert sorted(r.id for r in ds) == sorted(f"{name}/{r.id}" for r in folder)


def test_manifest_modalities_and_prompts(shared_data):
    for name, modality in MODALITY.items():
        ds = manifest(shared_data / "medsamples" / "MANIFEST.csv", where={"dataset": name})
        assert ds.modality == modality
        assert all("{}" in p for p in ds.prompts)
    derm = manifest(shared_data / "medsamples" / "MANIFEST.csv", where={"dataset": "ham10000_224"})
    assert "dermoscopy" in derm.prompts[0]


NPZ = {
    "breastmnist_resaved-flat-labels.npz": (
        {"train": 546, "val": 78, "test": 156},
        ["malignant", "normal, benign"],
        (28, 28),
    ),
    "pneumoniamnist_balanced-subset.npz": (
        {"train": 2428, "val": 270, "test": 468},
        ["normal", "pneumonia"],
        (28, 28),
    ),
    "retinamnist.npz": (
        {"train": 1080, "val": 120, "test": 400},
        ["0", "1", "2", "3", "4"],
        (28, 28),
    ),
}


@pytest.mark.parametrize("filename", sorted(NPZ))
def test_medmnist_files(shared_data, filename):
    sizes, classes, shape = NPZ[filename]
    ds = medmnist(shared_data / "medmnist" / filename)
    assert ds.class_names == classes
    for split, n in sizes.items():
        assert sum(ds.class_counts(split).values()) == n
    image = ds.load_image(ds.records[0])
    assert image.mode == "RGB" and image.size == shape
    padded = medmnist(shared_data / "medmnist" / filename, mode="pad", pad_to=224)
    big = padded.load_image(padded.records[0])
    assert big.size == (224, 224)
    # The original sits unscaled in the centre; the border is zero.
    assert big.crop((98, 98, 126, 126)).tobytes() == image.tobytes()
    assert not np.asarray(big.crop((0, 0, 90, 90))).any()
    assert padded.fingerprint() != ds.fingerprint()


def test_pneumoniamnist_is_balanced_as_documented(shared_data):
    ds = medmnist(shared_data / "medmnist" / "pneumoniamnist_balanced-subset.npz")
    assert ds.class_counts() == {"normal": 1583, "pneumonia": 1583}
    assert ds.modality == "chest x-ray"


def test_open_dataset_dispatches(shared_data):
    assert open_dataset(shared_data / "medsamples" / "busi_256").name == "busi_256"
    assert len(open_dataset(shared_data / "medmnist" / "retinamnist.npz")) == 1600
