"""Burned-in text audit: detection, prevalence, leakage, masking and reliance."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from medprobe.audit import TextDetector, TextMask, audit_text, detect_text, ocr, text_prevalence
from medprobe.cli import main
from medprobe.datasets import TextNuisance, open_dataset, synthetic
from medprobe.encoders import create_encoder
from medprobe.errors import MedprobeError
from medprobe.fonts import load_font


def _tesseract() -> None:
    if shutil.which("tesseract") is None:
        message = "tesseract-ocr is not installed (apt-get install tesseract-ocr)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    _tesseract()
    return tmp_path_factory.mktemp("audit-cache")


def _xray_with_text(size=(224, 224), text="LEFT BREAST", xy=(20, 190)) -> Image.Image:
    rng = np.random.default_rng(0)
    # a smooth radiograph-like gradient with mild noise
    ramp = np.linspace(60, 140, size[0])[None, :] * np.ones((size[1], 1))
    grey = np.clip(ramp + 4 * rng.standard_normal(size[::-1]), 0, 255).astype(np.uint8)
    image = Image.fromarray(grey).convert("RGB")
    font = load_font(max(12, size[1] // 16), "DejaVuSans-Bold")
    ImageDraw.Draw(image).text(xy, text, font=font, fill=(255, 255, 255))
    return image


def test_detector_reads_burned_in_words_where_they_are(cache):
    boxes = TextDetector().detect(_xray_with_text())
    tokens = {b.token for b in boxes}
    assert {"LEFT", "BREAST"} <= tokens
    for b in boxes:
        assert 180 <= b.y + b.height / 2 <= 215 and b.x >= 10
    blank = Image.fromarray(np.full((224, 224, 3), 120, np.uint8))
    assert TextDetector().detect(blank) == []


def test_detector_handles_grey_16_bit_and_huge_images(cache):
    image = _xray_with_text()
    # 16-bit: the text is 65535, far above 255; it must be rescaled, not clipped to white
    grey16 = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    assert grey16.mode == "I;16"
    for variant in (image.convert("L"), grey16):
        assert {"LEFT", "BREAST"} <= {b.token for b in TextDetector().detect(variant)}
    big = _xray_with_text((3000, 3000), "RT AXILLA", (300, 2600))
    boxes = TextDetector().detect(big)  # detected at 1024 px, boxes mapped back
    assert {"RT", "AXILLA"} <= {b.token for b in boxes}
    assert all(2400 < b.y + b.height / 2 < 2900 for b in boxes if b.token == "AXILLA")


def test_missing_tesseract_is_one_clear_sentence(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MEDPROBE_TESSERACT", "")
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    ocr.tesseract_version.cache_clear()
    try:
        with pytest.raises(MedprobeError, match="apt-get install tesseract-ocr"):
            TextDetector().describe()
        folder = tmp_path / "data"
        for cls in ("a", "b"):
            (folder / cls).mkdir(parents=True)
            _xray_with_text().save(folder / cls / "x.png")
        assert main(["audit", "text", str(folder)]) == 2
        err = capsys.readouterr().err
        assert "tesseract" in err and "Traceback" not in err
        # a study with text_audit lists it with the other missing pieces, before any work
        from medprobe.study.config import StudyConfig
        from medprobe.study.preflight import preflight

        config = StudyConfig(
            name="s",
            models=["pixels"],
            datasets=[{"name": "d", "path": str(folder)}],
            text_audit={},
        )
        assert any("tesseract-ocr" in p for p in preflight(config))
    finally:
        ocr.tesseract_version.cache_clear()


def test_mask_erases_only_the_text(cache):
    ds = synthetic("dermoscopy", 12, seed=0, text=TextNuisance(mode="label"), name="mask-check")
    found = detect_text(ds, cache=cache)
    # the same images under another name: a cache hit that carries the new name
    again = synthetic("dermoscopy", 12, seed=0, text=TextNuisance(mode="label"), name="renamed")
    assert detect_text(again, cache=cache).dataset == "renamed"
    index = next(i for i, b in enumerate(found.boxes) if b)
    record = next(r for r in ds.records if r.id == found.ids[index])
    image = ds.load_image(record)
    for mode in ("fill", "inpaint"):
        mask = TextMask(found, mode)
        out = np.asarray(mask(image, record, 0)).astype(int)
        changed = np.abs(out - np.asarray(image)).sum(2) > 0
        inside = np.zeros_like(changed)
        for b in found.boxes[index]:
            grow = round(0.3 * b.height) + 1
            inside[
                max(0, b.y - grow) : b.y + b.height + grow,
                max(0, b.x - grow) : b.x + b.width + grow,
            ] = True
        assert changed.any() and not (changed & ~inside).any()
    # An image without detected text passes through every mask unchanged (pixel for pixel).
    plain = synthetic("dermoscopy", 12, seed=0, name="mask-check-plain")
    nothing = detect_text(plain, cache=cache)
    record = next(r for r in plain.records if not nothing.boxes_of(r.id))
    image = plain.load_image(record)
    for mode in ("fill", "inpaint"):
        out = TextMask(nothing, mode)(image, record, 0)
        assert np.array_equal(np.asarray(out), np.asarray(image))
    assert TextMask(found, "fill").describe() != TextMask(found, "inpaint").describe()
    with pytest.raises(ValueError, match="fill"):
        TextMask(found, "blur")  # type: ignore[arg-type]


def test_real_covid_leaks_and_lc25000_does_not(shared_data, cache):
    root = shared_data / "medsamples"
    covid = audit_text(open_dataset(root / "covid19_radiography_224"), cache=cache)
    assert covid.leakage.flagged_
    assert covid.leakage.balanced_accuracy_.ci_low > covid.leakage.chance_
    assert covid.prevalence["COVID"].value > covid.prevalence["Normal"].value
    assert {"D", "DCHA"} & set(covid.tokens.token)
    histology = audit_text(open_dataset(root / "lc25000_lung_histopathology_224"), cache=cache)
    assert not histology.leakage.flagged_
    assert histology.prevalence["all"].value < 0.03
    rows = covid.rows()
    assert {r.analysis for r in rows} == {"text_audit"}
    assert any(r.metric == "leakage_flagged" and r.value == 1 for r in rows)


def test_real_busi_normal_class_nearly_text_free(shared_data, cache):
    found = detect_text(open_dataset(shared_data / "medsamples" / "busi_256"), cache=cache)
    prevalence = text_prevalence(found)
    assert prevalence["normal"].value <= 0.05
    assert prevalence["normal"].value < min(
        prevalence["benign"].value, prevalence["malignant"].value
    )
    words = {b.token for boxes in found.boxes for b in boxes}
    assert {"LT"} <= words  # "LT AXILLA", "LT LOQ", ... in benign/malignant


@pytest.fixture(scope="module")
def pixels():
    return create_encoder("pixels")


def _testbed_audit(mode: str, seed: int, cache, pixels):
    """The audit of 200 hard testbed lesions whose burned-in text is ``mode``, with pixels."""
    ds = synthetic(
        "dermoscopy",
        200,
        difficulty="hard",
        seed=seed,
        text=TextNuisance(mode=mode),
        name=f"{mode}-text",
    )
    return audit_text(ds, [pixels], cache=cache)


def test_synthetic_label_text_leaks_and_pixels_rely_on_it(cache, pixels):
    audit = _testbed_audit("label", 0, cache, pixels)
    assert audit.leakage.balanced_accuracy_.value > 0.85 and audit.leakage.flagged_
    scores = audit.reliance["pixels"]
    assert scores["linear_accuracy_original"].value > 0.95
    assert scores["linear_accuracy_drop"].ci_low > 0.15  # accuracy falls without the text
    assert scores["linear_fraction_lost"].value > 0.5
    rows = audit.rows()
    assert {"text_audit", "text_reliance"} == {r.analysis for r in rows}


def test_synthetic_independent_text_does_not_leak_nor_matter(cache, pixels):
    audit = _testbed_audit("independent", 1, cache, pixels)
    assert audit.prevalence["all"].value > 0.7  # the text is there and found...
    assert not audit.leakage.flagged_  # ...but says nothing about the label
    assert abs(audit.leakage.balanced_accuracy_.value - 0.5) < 0.08
    drop = audit.reliance["pixels"]["linear_accuracy_drop"]
    assert drop.ci_low <= 0 <= drop.ci_high + 1e-9 or abs(drop.value) < 0.05


def test_audit_cli_writes_results_and_report(cache, tmp_path):
    from medprobe.datasets.synthetic import write_image_folder

    folder = tmp_path / "data"
    ds = synthetic("ultrasound", 40, seed=2, text=TextNuisance(mode="label"), name="cli-text")
    write_image_folder(ds, folder)
    out = tmp_path / "out"
    code = main(
        ["audit", "text", str(folder), "-m", "pixels", "--out", str(out), "--cache", str(cache)]
    )
    assert code == 0
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    assert {"text_audit", "text_reliance"} <= set(results.analysis)
    html = (out / "report.html").read_text()
    assert 'id="audit-prevalence"' in html and 'id="audit-leakage"' in html
    assert "<figcaption>" in html and (out / "text_detections.json").is_file()
    assert main(["audit", "text", str(folder), "--mask", "blur"]) == 2


def test_study_file_runs_the_text_audit(cache, tmp_path):
    import pandas as pd

    study = tmp_path / "study.yaml"
    study.write_text(
        "name: audit study\n"
        "models: [pixels]\n"
        "datasets:\n"
        "  - name: label-text\n"
        "    synthetic: {kind: dermoscopy, n: 80, difficulty: hard, text: {mode: label}}\n"
        "analyses: [linear_probe]\n"
        f"cache: {cache}\n"
        "text_audit: {mask: inpaint}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    audit = results[results.analysis == "text_audit"]
    assert set(audit.encoder) == {"(ocr)"}
    flagged = audit[audit.metric == "leakage_flagged"].value.iloc[0]
    assert flagged == 1
    reliance = results[results.analysis == "text_reliance"]
    assert set(reliance.param_mask) == {"inpaint"} and set(reliance.encoder) == {"pixels"}
    html = (out / "report.html").read_text()
    assert 'id="audit-reliance"' in html and "<figcaption>" in html
    # a rerun reuses the finished unit and the cached detections: same rows
    assert main(["run", str(study), "--out", str(out)]) == 0
    again = pd.read_csv(out / "results.csv")
    assert len(again) == len(results)
    assert main(["report", str(out)]) == 0
    assert "<figcaption>" in (out / "report.html").read_text()
