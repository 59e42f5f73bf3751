"""The text-overlay probe: rendering, known-answer displacement, shortcut reliance, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from medprobe.analysis.overlay_bias import displacement, overlay_bias, shortcut_reliance
from medprobe.datasets import image_folder, synthetic
from medprobe.datasets.base import Record
from medprobe.encoders import create_encoder, get_spec
from medprobe.errors import MedprobeError
from medprobe.features import extract
from medprobe.overlay import OverlaySpec, TextOverlay

RECORD = Record("x", 0, "test", 0)


def _photo(size=(160, 120)):
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


@pytest.mark.parametrize("position", ["top-left", "bottom-right", "center", "random"])
def test_rendering_is_deterministic_and_only_inside_the_box(position):
    overlay = TextOverlay(
        OverlaySpec(source="wrong_class", position=position), ["benign", "malignant"]
    )
    image = _photo()
    first, box = overlay.draw(image, overlay.text_for(RECORD, 3), 3)
    again, _ = overlay.draw(image, overlay.text_for(RECORD, 3), 3)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert overlay.text_for(RECORD, 3) == "malignant"  # the wrong class of label 0
    changed = np.abs(np.asarray(first, int) - np.asarray(image, int)).sum(axis=2) > 0
    assert changed.any()
    x0, y0, x1, y1 = box
    outside = changed.copy()
    outside[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = False
    assert not outside.any()


def test_sources_and_spec_serialisation():
    names = ["nevus", "melanoma", "bcc"]
    for source in ("true_class", "wrong_class", "random_word", "clinical"):
        overlay = TextOverlay(OverlaySpec(source=source, seed=1), names)
        texts = {overlay.text_for(Record("r", 1, "test", 0), i) for i in range(40)}
        if source == "true_class":
            assert texts == {"melanoma"}
        if source == "wrong_class":
            assert texts == {"nevus", "bcc"}
        if source == "random_word":
            assert len(texts) > 3
        if source == "clinical":
            assert {"L", "R"} & texts and any(t.startswith("ID ") for t in texts)
    spec = OverlaySpec(source="fixed", text="L", position="top-left")
    assert OverlaySpec.model_validate_json(spec.model_dump_json()) == spec
    assert spec.describe() != OverlaySpec(source="fixed", text="R").describe()
    assert spec.describe()["font_file"] == "DejaVuSans-Bold.ttf"


def test_bad_overlays_are_clear_errors():
    with pytest.raises(ValidationError, match="vocabulary is empty"):
        OverlaySpec(source="random_word", vocabulary=("", " "))
    with pytest.raises(MedprobeError, match="not bundled"):
        TextOverlay(OverlaySpec(font="NoSuchFont"), ["a", "b"])
    overlay = TextOverlay(
        OverlaySpec(source="fixed", text="a very long burned-in annotation", size=0.3), ["a", "b"]
    )
    with pytest.raises(MedprobeError, match="does not fit a 160x120 image"):
        overlay(_photo(), RECORD, 0)


def _wide_folder(tmp_path):
    """Wide images whose corners a centre crop never sees."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(12):
            coarse = rng.integers(0, 255, (4, 8, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((256, 96), Image.Resampling.BICUBIC).save(
                tmp_path / cls / f"{i}.png"
            )
    return image_folder(tmp_path, test_fraction=0.5)


def test_encoder_blind_to_the_corner_is_not_displaced(tmp_path):
    ds = _wide_folder(tmp_path)
    corner = TextOverlay(
        OverlaySpec(source="fixed", text="L", size=0.25, position="top-left", margin=0.0),
        ds.class_names,
    )
    sees_all = create_encoder("handcrafted")  # squashes the whole image
    crop_spec = get_spec("handcrafted").model_copy(
        update={
            "name": "handcrafted-centre",
            "preprocessing": get_spec("handcrafted").preprocessing.model_copy(
                update={"resize_mode": "resize_center_crop"}
            ),
        }
    )
    blind = create_encoder(crop_spec)  # centre crop of a 256x96 image drops both ends
    for encoder, expect_zero in ((blind, True), (sees_all, False)):
        clean = extract(encoder, ds, show_progress=False)
        over = extract(encoder, ds, overlay=corner, show_progress=False)
        moved = displacement(clean, over)
        if expect_zero:
            assert moved.value == pytest.approx(0.0, abs=1e-9)
        else:
            assert moved.value > 0.01 and moved.ci_low > 0


def test_shortcut_reliance_is_detected_with_pixels():
    scores = shortcut_reliance(create_encoder("pixels"), n=240, size=96)
    assert scores["accuracy_shortcut_present"].value > 0.9
    assert scores["accuracy_shortcut_removed"].value < 0.75
    assert scores["reliance"].ci_low > 0.1


def test_overlay_bias_on_real_images(shared_data, tmp_path):
    ds = image_folder(
        shared_data / "medsamples" / "lc25000_lung_histopathology_224", modality="histopathology"
    )
    results = overlay_bias(
        create_encoder("handcrafted"),
        ds,
        [
            OverlaySpec(source="wrong_class"),
            OverlaySpec(source="random_word"),
            OverlaySpec(source="clinical", position="top-left"),
        ],
        cache=tmp_path,
    )
    assert [r.overlay.source for r in results] == ["wrong_class", "random_word", "clinical"]
    for result in results:
        est = result.scores["displacement"]
        assert est.value > 0 and est.ci_low <= est.value <= est.ci_high
        assert {"knn_accuracy_drop", "linear_accuracy_overlaid"} <= set(result.scores)
    readability = results[1].scores["text_readability"]
    assert readability.value > 1 / 8  # above chance: hand-crafted texture sees the letters


def test_typographic_attack_on_a_vision_language_model(tmp_path):
    from test_analyses import _tiny_open_clip

    _tiny_open_clip(tmp_path / "clip")
    encoder = create_encoder(f"local:{tmp_path / 'clip'}", domain="general")
    ds = synthetic("dermoscopy", 40, size=96)
    result = overlay_bias(encoder, ds, [OverlaySpec(source="wrong_class", size=0.12)])[0]
    for metric in ("attack_success", "zero_shot_flip_rate", "zero_shot_accuracy_overlaid"):
        est = result.scores[metric]
        assert 0 <= est.ci_low <= est.value <= est.ci_high <= 1


def test_study_with_overlays_writes_the_report_section(tmp_path):
    import yaml

    from medprobe.report.html import write_report
    from medprobe.study.config import load_config
    from medprobe.study.runner import run_study

    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "overlay study",
                "models": ["pixels", "handcrafted"],
                "datasets": [
                    {"name": "synth", "synthetic": {"kind": "ultrasound", "n": 60, "size": 96}}
                ],
                "analyses": ["linear_probe"],
                "cache": str(tmp_path / "cache"),
                "overlays": [
                    {"source": "wrong_class"},
                    {"source": "clinical", "position": "top-left"},
                ],
            }
        )
    )
    out = tmp_path / "out"
    outcome = run_study(load_config(tmp_path / "s.yaml"), out, show_progress=False)
    overlay = outcome.results[outcome.results.analysis == "overlay"]
    assert set(overlay.param_overlay) == {"wrong_class@bottom-right", "clinical@top-left"}
    assert set(overlay.encoder) == {"pixels", "handcrafted"}
    write_report(outcome, out)
    html = (out / "report.html").read_text()
    assert (
        'id="overlay-table"' in html and html.count('alt="wrong_class@bottom-right example"') == 4
    )


def test_paired_comparison_of_text_sensitivity():
    from medprobe.analysis.overlay_bias import compare_displacement

    ds = synthetic("dermoscopy", 60, size=96)
    spec = OverlaySpec(source="fixed", text="malignant", position="center", size=0.15)
    pixels = overlay_bias(create_encoder("pixels"), ds, [spec])[0]
    handcrafted = overlay_bias(create_encoder("handcrafted"), ds, [spec])[0]
    diff = compare_displacement(pixels, handcrafted)
    expected = pixels.displacements.mean() - handcrafted.displacements.mean()
    assert diff.difference == pytest.approx(expected)
    assert diff.ci_low <= diff.difference <= diff.ci_high and 0 < diff.p_value <= 1
    same = compare_displacement(pixels, pixels)
    assert same.difference == 0
