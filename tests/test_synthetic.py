import numpy as np
import pytest
from pydantic import ValidationError

from medprobe.datasets import TextNuisance, synthetic
from medprobe.datasets.synthetic import SyntheticConfig, render_image, write_image_folder


@pytest.mark.parametrize("kind", ["dermoscopy", "ultrasound"])
def test_images_are_a_pure_function_of_seed_and_index(kind):
    config = SyntheticConfig(
        kind=kind,
        n=10,
        size=64,
        hair=1,
        ruler=1,
        vignetting=1,
        colour_cast=1,
        text=TextNuisance(mode="independent"),
    )
    first, plan = render_image(config, 7)
    again, plan_again = render_image(config, 7)
    assert plan == plan_again
    assert np.array_equal(np.asarray(first), np.asarray(again))
    other, _ = render_image(config, 8)
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    reseeded, _ = render_image(config.model_copy(update={"seed": 1}), 7)
    assert not np.array_equal(np.asarray(first), np.asarray(reseeded))
    assert first.mode == "RGB" and first.size == (64, 64)


def test_nuisance_changes_do_not_move_labels_or_splits():
    plain = synthetic("dermoscopy", 50, hair=0, ruler=0)
    noisy = synthetic("dermoscopy", 50, hair=1, ruler=1, text=TextNuisance(mode="label"))
    assert [(r.label, r.split) for r in plain] == [(r.label, r.split) for r in noisy]


def test_classes_are_balanced_and_both_splits_exist():
    ds = synthetic("ultrasound", 101)
    counts = ds.class_counts()
    assert abs(counts["benign"] - counts["malignant"]) <= 1
    assert {r.split for r in ds} == {"train", "test"}
    assert 0.15 < sum(r.split == "test" for r in ds) / len(ds) < 0.45


def test_severity_follows_label_only_when_there_is_signal():
    def gap(ds):
        sev = np.array([r.meta["severity"] for r in ds])
        lab = np.array([r.label for r in ds])
        return sev[lab == 1].mean() - sev[lab == 0].mean()

    assert gap(synthetic("dermoscopy", 400, difficulty="easy")) > 0.6
    assert abs(gap(synthetic("dermoscopy", 400, difficulty="none"))) < 0.03


def test_malignant_lesions_are_larger_and_darker():
    ds = synthetic(
        "dermoscopy", 40, difficulty="easy", hair=0, ruler=0, vignetting=0, colour_cast=0
    )
    darkness = {0: [], 1: []}
    for r in ds:
        grey = np.asarray(ds.load_image(r).convert("L"), dtype=float)
        darkness[r.label].append((grey < 110).mean())
    assert np.mean(darkness[1]) > 2 * np.mean(darkness[0])


def test_text_modes():
    label = synthetic("dermoscopy", 40, text=TextNuisance(mode="label"))
    assert all(r.meta["text"] == label.class_names[r.label] for r in label)

    independent = synthetic("dermoscopy", 400, text=TextNuisance(mode="independent"))
    agree = np.mean([r.meta["text"] == independent.class_names[r.label] for r in independent])
    assert 0.4 < agree < 0.6

    corr = synthetic("dermoscopy", 600, text=TextNuisance(mode="correlated", correlation=0.9))
    train = [r for r in corr if r.split == "train"]
    test = [r for r in corr if r.split == "test"]
    train_agree = np.mean([r.meta["text"] == corr.class_names[r.label] for r in train])
    test_agree = np.mean([r.meta["text"] == corr.class_names[r.label] for r in test])
    assert train_agree > 0.85
    assert 0.35 < test_agree < 0.65

    none = synthetic("dermoscopy", 20)
    assert all(r.meta["text"] == "" for r in none)


def test_burned_in_text_changes_pixels_only_where_written():
    base = SyntheticConfig(n=4, size=96)
    with_text = base.model_copy(update={"text": TextNuisance(mode="label")})
    clean = np.asarray(render_image(base, 1)[0], dtype=int)
    written = np.asarray(render_image(with_text, 1)[0], dtype=int)
    changed = np.abs(clean - written).sum(axis=2) > 0
    assert changed.any()
    rows = np.nonzero(changed)[0]
    # The label fits in a band at the top or bottom: a small part of the image, not all of it.
    assert changed.mean() < 0.25
    assert rows.max() - rows.min() < 96 * 0.3


def test_empty_vocabulary_is_rejected():
    with pytest.raises(ValidationError, match="vocabulary is empty"):
        TextNuisance(mode="independent", vocabulary=("", " "))


def test_write_image_folder(tmp_path):
    ds = synthetic("ultrasound", 6, size=48, text=TextNuisance(mode="label"))
    manifest = write_image_folder(ds, tmp_path)
    lines = manifest.read_text().splitlines()
    assert lines[0] == "path,label,split,severity,text"
    assert len(lines) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benign", "malignant", "manifest.csv"]
    assert len(list((tmp_path / "benign").glob("*.png"))) == 3
