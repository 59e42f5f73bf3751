"""Burned-in text audit: detectors, marks, prevalence, leakage, masking and reliance."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, permutation_test_score

from medprobe.audit import (
    MarkFinder,
    TextBox,
    TextDetections,
    TextLeakage,
    TextMask,
    audit_text,
    create_detector,
    detect_text,
)
from medprobe.audit.boxes import rect_iou
from medprobe.audit.detector import _warp
from medprobe.audit.run import caption
from medprobe.cli import main
from medprobe.datasets import TextNuisance, synthetic
from medprobe.datasets.synth_render import draw_ruler
from medprobe.encoders import create_encoder
from medprobe.errors import MedprobeError
from medprobe.overlay import OverlaySpec, TextOverlay


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("audit-cache")


@pytest.fixture(scope="module")
def detector():
    return create_detector()  # the default: rapidocr, marks included


def _xray(size=(224, 224), seed=0) -> Image.Image:
    """A smooth radiograph-like gradient with mild noise, free of text."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 140, size[0])[None, :] * np.ones((size[1], 1))
    grey = np.clip(ramp + 4 * rng.standard_normal(size[::-1]), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _write(image: Image.Image, text: str, size: float, position: str, **style):
    """``image`` with ``text`` drawn by the overlay renderer, and the text's box."""
    spec = OverlaySpec(source="fixed", text=text, size=size, position=position, **style)
    return TextOverlay(spec, ["x"]).draw(image, text, 0)


def _words(boxes):
    return [b for b in boxes if b.kind == "word"]


def test_text_at_known_boxes_is_found_and_read(detector):
    image, box = _write(_xray(), "LEFT BREAST", 0.06, "bottom-left", outline=None)
    image, box2 = _write(image, "AP", 0.05, "top-right", colour=(20, 20, 20), outline=None)
    words = _words(detector.detect(image))
    for truth, text in ((box, "LEFTBREAST"), (box2, "AP")):
        hit = [w for w in words if rect_iou(w.rect, truth) >= 0.3]
        assert len(hit) == 1 and hit[0].token == text and hit[0].orientation == "upright"
    assert len(words) == 2


def test_text_free_images_are_not_flagged(detector, shared_data):
    assert detector.detect(_xray()) == []
    root = shared_data / "medsamples"
    for path in (
        "lc25000_lung_histopathology_224/lung_n/lungn1167.jpeg",
        "odir_fundus_400/cataract/0_left.jpg",
        "ham10000_224/bcc/ISIC_0031539.jpg",
    ):
        assert detector.detect(Image.open(root / path)) == [], path


def test_mirrored_and_turned_markers_are_found_with_their_orientation(detector):
    plain, box = _write(_xray(), "L", 0.1, "top-left", outline=None)
    mirrored = ImageOps.mirror(plain)  # a flipped slice: the marker reads backwards
    x0, y0, x1, y1 = box
    words = _words(detector.detect(mirrored))
    assert [(w.token, w.orientation) for w in words] == [("L", "mirrored")]
    assert rect_iou(words[0].rect, (224 - x1, y0, 224 - x0, y1)) >= 0.3
    label, _ = _write(_xray(), "PORTABLE", 0.06, "bottom-left", outline=None)
    turned = label.rotate(90, expand=True)  # the text now runs bottom to top
    words = _words(detector.detect(turned))
    assert [(w.token, w.orientation) for w in words] == [("PORTABLE", "rot90")]
    assert abs(abs(words[0].angle) - 90) < 10 and len(words[0].quad) == 4
    # a flipped film that is also on its side: mirrored and turned at once
    short, _ = _write(_xray(), "LT", 0.06, "top-left", outline=None)
    both = ImageOps.mirror(short).rotate(90, expand=True)
    assert [(w.token, w.orientation) for w in _words(detector.detect(both))] == [
        ("LT", "mirrored-rot90")
    ]


def test_rapidocr_reads_each_crop_as_it_reads_alone(detector):
    # rapidocr pads a batch's crops to the widest one: a narrow letter read beside a wide line
    # read differently (COVID-2291's "D": 0.07 in its batch, 1.00 alone)
    font = ImageFont.load_default(size=34)

    def crop(text: str, width: int) -> np.ndarray:
        image = Image.new("RGB", (width, 48), (20, 20, 20))
        ImageDraw.Draw(image).text((4, 4), text, fill=(235, 235, 235), font=font)
        return np.asarray(image)

    crops = [crop("D", 30), crop("PORTABLE CHEST", 300), crop("R", 40), crop("AP", 60)]
    together = detector.read(crops)
    assert together == [detector.read([c])[0] for c in crops]
    assert together[1][0].replace(" ", "") == "PORTABLECHEST"


def test_small_regions_are_cut_out_enlarged_in_one_warp():
    rgb = np.zeros((60, 60, 3), np.uint8)
    rgb[20:26, 10:15] = 255  # the left half of a 10 x 6 region is white
    quad = np.array([[10, 20], [20, 20], [20, 26], [10, 26]], float)
    crop = _warp(rgb, quad, 0.0, 48)
    assert crop.shape[:2] == (48, 80)  # the shorter side enlarged to the recogniser's 48 px
    assert crop[6:-6, 6:32].min() > 200 and crop[6:-6, 44:-6].max() < 50
    assert _warp(rgb, quad * 10, 0.0, 48).shape[:2] == (60, 100)  # large ones stay as they are


def test_stacked_scanner_label_is_found_close_up(shared_data):
    """BUSI's grey "LOGIQ" over "E9" (7-pixel lines) is one region to the localiser and reads
    as nothing; localised again enlarged, its lines are found apart and "E9" reads."""
    image = Image.open(shared_data / "medsamples/busi_256/malignant/malignant (64).png")
    truth = (19, 0, 40, 14)  # both lines, as annotated in benchmarks/data
    found = _words(create_detector().detect(image))
    assert any(rect_iou(w.rect, truth) >= 0.3 and "E9" in w.token for w in found)
    assert _words(create_detector(zoom_side=0).detect(image)) == []


def test_coloured_caliper_and_label_are_found(detector):
    image = _xray()
    draw = ImageDraw.Draw(image)
    yellow = (255, 230, 0)
    for cx, cy in ((70, 100), (150, 120)):  # two measurement crosses and the line between
        draw.line((cx - 5, cy, cx + 5, cy), fill=yellow, width=1)
        draw.line((cx, cy - 5, cx, cy + 5), fill=yellow, width=1)
    draw.line((70, 100, 150, 120), fill=yellow, width=1)
    image, label = _write(image, "RT UOQ", 0.06, "bottom-left", colour=yellow, outline=None)
    found = detector.detect(image)
    assert [w.token for w in _words(found)] == ["RTUOQ"]  # the coloured label is text
    marks = [b for b in found if b.kind == "mark"]
    assert marks and {m.text for m in marks} == {"colour"}
    assert all(rect_iou(m.rect, label) == 0 for m in marks)  # the label is left to the word
    assert any(m.x <= 70 <= m.x + m.width and m.y <= 100 <= m.y + m.height for m in marks)
    # the same drawing in grey is not a coloured mark; text-free means no word and no mark
    assert MarkFinder().find(np.asarray(_xray())) == []


def test_rulers_and_frames_are_marks():
    finder = MarkFinder()
    ruled = _xray()
    draw_ruler(np.random.default_rng(3), ruled)
    assert "ruler" in {m.text for m in finder.find(np.asarray(ruled))}
    framed = _xray()
    ImageDraw.Draw(framed).rectangle((4, 4, 219, 219), outline=(250, 250, 250), width=2)
    assert "frame" in {m.text for m in finder.find(np.asarray(framed))}


def test_detector_handles_grey_16_bit_and_huge_images(detector):
    image, _ = _write(_xray(), "LEFT BREAST", 0.07, "bottom-left", outline=None)
    # 16-bit: the text is 65535, far above 255; it must be rescaled, not clipped to white
    grey16 = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    assert grey16.mode == "I;16"
    for variant in (image.convert("L"), grey16):
        assert "LEFTBREAST" in {b.token for b in detector.detect(variant)}
    big, box = _write(_xray((3000, 3000)), "RT AXILLA", 0.04, "bottom-left", outline=None)
    words = _words(detector.detect(big))  # detected at 1024 px, boxes mapped back
    assert [w.token for w in words] == ["RTAXILLA"] and rect_iou(words[0].rect, box) >= 0.3


def test_registry_settings_and_missing_packages_are_one_sentence(monkeypatch):
    with pytest.raises(MedprobeError, match="known detectors: rapidocr"):
        create_detector("paddle")
    with pytest.raises(MedprobeError, match="min_confidence"):
        create_detector("rapidocr", min_confidence=3)
    a, b = create_detector(), create_detector(min_confidence=0.95)
    assert a.describe()["detector"] == "rapidocr" and a.describe()["rapidocr"]
    assert a.describe() != b.describe()  # settings are part of the cache key
    from medprobe.audit import rapid

    real_import = builtins.__import__

    def no_rapidocr(name, *args, **kwargs):
        if name == "rapidocr":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    rapid._versions.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_rapidocr)
    try:
        with pytest.raises(MedprobeError, match="pip install rapidocr"):
            create_detector().describe()
        from medprobe.study.config import StudyConfig
        from medprobe.study.preflight import preflight

        config = StudyConfig(
            name="s",
            models=["pixels"],
            datasets=[{"name": "d", "synthetic": {"kind": "dermoscopy", "n": 8}}],
            text_audit={},
        )
        assert any("rapidocr" in p for p in preflight(config))
    finally:
        monkeypatch.undo()
        rapid._versions.cache_clear()


def test_mask_erases_only_the_detections(cache, detector):
    ds = synthetic("dermoscopy", 12, seed=0, text=TextNuisance(mode="label"), name="mask-check")
    found = detect_text(ds, detector, cache=cache)
    assert found.detector["detector"] == "rapidocr"
    # the same images under another name: a cache hit that carries the new name
    again = synthetic("dermoscopy", 12, seed=0, text=TextNuisance(mode="label"), name="renamed")
    assert detect_text(again, detector, cache=cache).dataset == "renamed"
    # other settings are another cache entry
    detect_text(ds, create_detector(min_confidence=0.95), cache=cache)
    assert len(list((cache / "text-audit").glob("*.json"))) == 2
    index = next(i for i, b in enumerate(found.boxes) if b)
    record = next(r for r in ds.records if r.id == found.ids[index])
    image = ds.load_image(record)
    for mode in ("fill", "inpaint"):
        mask = TextMask(found, mode)
        out = np.asarray(mask(image, record, 0)).astype(int)
        changed = np.abs(out - np.asarray(image)).sum(2) > 0
        inside = np.zeros_like(changed)
        for b in found.boxes[index]:
            grow = round(0.3 * min(b.height, b.width)) + 1
            inside[
                max(0, b.y - grow) : b.y + b.height + grow,
                max(0, b.x - grow) : b.x + b.width + grow,
            ] = True
        assert changed.any() and not (changed & ~inside).any()
    # An image without detections passes through every mask unchanged (pixel for pixel).
    plain = synthetic("dermoscopy", 12, seed=0, name="mask-check-plain")
    nothing = detect_text(plain, detector, cache=cache)
    record = next(r for r in plain.records if not nothing.boxes_of(r.id))
    image = plain.load_image(record)
    for mode in ("fill", "inpaint"):
        out = TextMask(nothing, mode)(image, record, 0)
        assert np.array_equal(np.asarray(out), np.asarray(image))
    assert TextMask(found, "fill").describe() != TextMask(found, "inpaint").describe()
    with pytest.raises(ValueError, match="fill"):
        TextMask(found, "blur")  # type: ignore[arg-type]


def test_permutation_test_stops_early_only_where_nothing_leaks():
    # the sequential p-value reads scikit-learn's permutation scores (same draws) in order;
    # small forests: the rule, not the forest, is under test
    class Quick(TextLeakage):
        def _forest(self, seed: int) -> RandomForestClassifier:
            return RandomForestClassifier(n_estimators=5, random_state=seed)

    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    leaking = np.column_stack([y + rng.normal(0, 0.3, 40), rng.random(40)])
    noise = rng.random((40, 2))
    for x in (leaking, noise):
        leakage = Quick(n_permutations=30, stop_after=3)
        p, run = leakage._permutation_test(x, y, folds=2)
        observed, permuted, fixed = permutation_test_score(
            leakage._forest(0),
            x,
            y,
            cv=StratifiedKFold(2, shuffle=True, random_state=0),
            n_permutations=30,
            scoring="balanced_accuracy",
            random_state=0,
        )
        reached = np.cumsum(permuted >= observed)
        if reached[-1] < 3:  # never stopped: the fixed-size p-value
            assert x is leaking and run == 30 and p == fixed
        else:
            stop = int(np.argmax(reached == 3)) + 1
            assert x is noise and run == stop < 30 and p == 3 / stop
    with pytest.raises(MedprobeError, match="stop_after"):
        TextLeakage(stop_after=0)._fit(
            TextDetections("t", ["a", "b"], ["0", "1"] * 2, [0, 1] * 2, [[]] * 4, [(8, 8)] * 4, {})
        )


def test_leakage_fit_is_reused_from_the_cache(tmp_path, monkeypatch):
    # 30 images, "L" on most of class 0 and "R" on most of class 1
    labels = np.arange(30) % 2
    boxes = [
        [TextBox("LR"[y] if k % 5 else "LR"[1 - y], 0.99, 4, 4, 10, 10)]
        for k, y in enumerate(labels)
    ]
    found = TextDetections(
        "toy", ["a", "b"], [str(k) for k in range(30)], labels, boxes, [(64, 64)] * 30, {}
    )
    # seven forests a fit: what is checked is the round trip, not the statistics
    quick = {"n_splits": 2, "n_repeats": 1, "n_resamples": 200, "n_permutations": 1}
    fresh = TextLeakage(**quick).fit(found)
    first = TextLeakage(**quick).fit(found, tmp_path)
    with monkeypatch.context() as patch:  # read back, not fitted again: every fitted attribute
        patch.setattr(TextLeakage, "_fit", lambda *_: pytest.fail("fitted again"))
        again = TextLeakage(**quick).fit(found, tmp_path)
    for fit in (first, again):
        assert fit.scores() == fresh.scores() and fit.flagged_ == fresh.flagged_
        assert fit.permutations_ == fresh.permutations_ == 1
        assert fit.importances_ == fresh.importances_ and list(fit.importances_) == list(
            fresh.importances_
        )
        assert np.array_equal(fit.correct_, fresh.correct_)
    [entry] = list((tmp_path / "text-audit").glob("*.json"))
    # a damaged or foreign entry is not served: fitted again, the same result, rewritten whole
    whole = entry.read_text()
    for damage in (whole[:40], whole.replace('"key": "', '"key": "other')):
        entry.write_text(damage)
        refitted = TextLeakage(**quick).fit(found, tmp_path)
        assert refitted.scores() == fresh.scores() and entry.read_text() == whole
    # other settings or other detections are another fit
    TextLeakage(**quick, seed=1).fit(found, tmp_path)
    found.labels = 1 - labels
    TextLeakage(**quick).fit(found, tmp_path)
    assert len(list((tmp_path / "text-audit").glob("*.json"))) == 3


@pytest.fixture(scope="module")
def pixels():
    return create_encoder("pixels")


def _testbed_audit(mode: str, seed: int, cache, pixels):
    """The audit of 200 hard testbed lesions whose burned-in text is ``mode``, with pixels
    (20 permutations: p = 1/21 < 0.05 at the least; the default's 100 run on the real
    LC25000 tiles in test_audit_real, where the sequential test stops early)."""
    ds = synthetic(
        "dermoscopy",
        200,
        difficulty="hard",
        seed=seed,
        text=TextNuisance(mode=mode),
        name=f"{mode}-text",
    )
    return audit_text(ds, [pixels], cache=cache, permutations=20)


def test_synthetic_label_text_leaks_and_pixels_rely_on_it(cache, pixels):
    audit = _testbed_audit("label", 0, cache, pixels)
    assert audit.prevalence["all"].value > 0.9
    assert audit.leakage.balanced_accuracy_.value > 0.85 and audit.leakage.flagged_
    scores = audit.reliance["pixels"]
    assert scores["linear_accuracy_original"].value > 0.95
    assert scores["linear_accuracy_drop"].ci_low > 0.15  # accuracy falls without the text
    assert scores["linear_fraction_lost"].value > 0.5
    rows = audit.rows()
    assert {"text_audit", "text_reliance"} == {r.analysis for r in rows}


def test_synthetic_independent_text_does_not_leak_nor_matter(cache, pixels):
    audit = _testbed_audit("independent", 1, cache, pixels)
    assert audit.prevalence["all"].value > 0.9  # the text is there and found...
    assert not audit.leakage.flagged_  # ...but says nothing about the label
    assert abs(audit.leakage.balanced_accuracy_.value - 0.5) < 0.08
    drop = audit.reliance["pixels"]["linear_accuracy_drop"]
    assert drop.ci_low <= 0 <= drop.ci_high + 1e-9 or abs(drop.value) < 0.05


def test_easyocr_craft_finds_the_same_label(shared_data):
    image = Image.open(shared_data / "medsamples" / "busi_256" / "benign" / "benign (1).png")
    detector = create_detector("easyocr-craft")
    tokens = {w.token for w in _words(detector.detect(image))}
    assert {"LEFT", "BREAST"} <= tokens or "LEFTBREAST" in tokens
    assert detector.describe()["detector"] == "easyocr-craft"


def test_captions_name_words_orientations_and_marks():
    boxes = [
        TextBox("L", 0.99, 0, 0, 5, 5, orientation="mirrored"),
        TextBox("DAY 6", 0.98, 0, 9, 20, 5),
        TextBox("colour", 1.0, 30, 30, 6, 6, kind="mark"),
        TextBox("colour", 1.0, 50, 30, 6, 6, kind="mark"),
    ]
    assert caption(boxes) == "L (mirrored), DAY 6; marks: colour x2"
    assert caption([]) == "no text"


def test_audit_cli_writes_results_and_report(cache, tmp_path):
    from medprobe.datasets.synthetic import write_image_folder

    folder = tmp_path / "data"
    ds = synthetic("ultrasound", 40, seed=2, text=TextNuisance(mode="label"), name="cli-text")
    write_image_folder(ds, folder)
    out = tmp_path / "out"
    code = main(
        [
            "audit",
            "text",
            str(folder),
            "-m",
            "pixels",
            "--out",
            str(out),
            "--cache",
            str(cache),
            "--permutations",
            "20",
        ]
    )
    assert code == 0
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    assert {"text_audit", "text_reliance"} <= set(results.analysis)
    assert set(results.param_detector.dropna()) == {"rapidocr"}
    p_value = results[results.metric == "leakage_p_value"].value
    assert p_value.tolist() == pytest.approx([1 / 21])  # --permutations 20, nothing reached it
    html = (out / "report.html").read_text()
    assert 'id="audit-prevalence"' in html and 'id="audit-leakage"' in html
    assert "images with marks" in html and "rapidocr 3." in html
    assert "<figcaption>" in html
    saved = json.loads((out / "text_detections.json").read_text())
    assert saved["detector"]["detector"] == "rapidocr"
    assert main(["audit", "text", str(folder), "--mask", "blur"]) == 2
    assert main(["audit", "text", str(folder), "--detector", "paddle"]) == 2
    assert main(["audit", "text", str(folder), "--min-confidence", "7"]) == 2
    assert main(["audit", "text", str(folder), "--permutations", "0"]) == 2


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
        # 20 permutations: p = 1/21 < 0.05 at the least, and a fifth of the default's forests
        "text_audit: {mask: inpaint, detector: rapidocr, settings: {min_confidence: 0.85},"
        " permutations: 20}\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    audit = results[results.analysis == "text_audit"]
    assert set(audit.encoder) == {"(ocr)"} and set(audit.param_detector) == {"rapidocr"}
    flagged = audit[audit.metric == "leakage_flagged"].value.iloc[0]
    assert flagged == 1
    assert audit[audit.metric == "leakage_p_value"].value.iloc[0] == pytest.approx(1 / 21)
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
    # an unknown detector or setting is refused when the file is read, in one sentence
    study.write_text(study.read_text().replace("min_confidence: 0.85", "min_confidence: 9"))
    assert main(["run", str(study), "--out", str(out)]) == 2
