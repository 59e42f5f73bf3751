"""The text side: prompt sensitivity, expert vs lay names, text-addressable share.

Known answers on tiny real CLIP-style architectures (open_clip and transformers CLIP, random
weights, loaded through ``create_encoder`` from their on-disk layouts) and on real lung
histopathology images: with random weights every measure is at chance within its CI; with a
text tower constructed so that every prompt of a class embeds to the class mean of the image
features, zero-shot is the (cosine) nearest-centroid classifier and the text-addressable share
is 1; a template that names the class twice is one template like any other; LLM2CLIP's LLM is
never built for image-only analyses; and the rows and the report section come out of a study.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats
from scipy.spatial.distance import cdist
from sklearn.metrics import balanced_accuracy_score

from medprobe.analysis import LinearProbe, registry
from medprobe.analysis.rows import RowContext
from medprobe.analysis.stats import bootstrap
from medprobe.analysis.suite import UnitInput
from medprobe.analysis.text_side import (
    PromptSensitivity,
    Terminology,
    TextShare,
    name_variants,
)
from medprobe.analysis.zeroshot import ZeroShot, unit_rows
from medprobe.datasets import open_dataset, synthetic
from medprobe.datasets.prompts import MODALITY_PROMPTS, NEUTRAL_PROMPTS, fill
from medprobe.datasets.vocabulary import bundled_modalities, bundled_terms, vocabulary_sources
from medprobe.encoders import create_encoder
from medprobe.errors import MedprobeError
from medprobe.features import FeatureSet, extract
from medprobe.features.store import FeatureStore
from medprobe.features.text_store import TextEmbeddings, clear_memory, text_key
from text_models import ARCHITECTURES, align_text_to, with_new_text_tower

CHROMIUM = Path("/usr/bin/chromium")
CHANCE = 1 / 3  # three lung classes
ONCE, TWICE = "an H&E stained image of {}.", "{}: an H&E stained image of {}."


@pytest.fixture(scope="module")
def lung(shared_data):
    return open_dataset(
        shared_data / "medsamples/MANIFEST.csv",
        where={"dataset": "lc25000_lung_histopathology_224"},
        name="lc25000",
    )


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def random_vlm(request, tmp_path_factory, lung):
    """A random-weight tiny VLM of each architecture and its features of the lung images."""
    folder = tmp_path_factory.mktemp(request.param) / "model"
    model = ARCHITECTURES[request.param](folder)
    encoder = create_encoder(f"local:{folder}", domain="general")
    assert encoder.has_text
    features = extract(encoder, lung, show_progress=False)
    return SimpleNamespace(
        kind=request.param, folder=folder, model=model, encoder=encoder, features=features
    )


def _contains(estimate, value: float) -> bool:
    return estimate.ci_low - 1e-12 <= value <= estimate.ci_high + 1e-12


# ------------------------------------------------------------------- random weights: chance


def _shuffled(fs: FeatureSet, seed: int = 0) -> FeatureSet:
    """The same features with labels that say nothing about the images."""
    rng = np.random.default_rng(seed)
    return FeatureSet(
        features=fs.features,
        labels=rng.permutation(fs.labels),
        ids=fs.ids,
        splits=fs.splits,
        class_names=fs.class_names,
        encoder=fs.encoder,
        dataset=fs.dataset,
    )


def _text_measures(encoder, fs, lung, **boot) -> dict[str, list]:
    """Every text-side estimate of one fit, grouped by what it equals at chance."""
    terms = lung.class_terms()
    ps = PromptSensitivity(encoder, templates=lung.prompts, terms=terms, **boot).fit(fs)
    te = Terminology(encoder, templates=lung.prompts, terms=terms, **boot).fit(fs)
    ts = TextShare(encoder, templates=lung.prompts, **boot).fit(fs)
    share = ts.results_[0][1]
    return {
        "chance": [
            s[m]
            for _, s in ps.results_ + te.results_
            for m in ("balanced_accuracy", "balanced_accuracy_mean")
            if m in s
        ],
        "zero": [
            te.results_[2][1]["balanced_accuracy_difference"],
            share["zero_shot_above_chance"],
            share["text_share"],
            share["cosine_margin"],
        ],
        "probe": [share["linear_probe_above_chance"]],
        "variants": [v.label for v in ps.variants_],
    }


def test_random_weights_every_text_measure_is_at_chance(random_vlm, lung):
    """Labels that say nothing about the images, random weights: every zero-shot balanced
    accuracy contains chance, every difference, margin and share 0, within CIs that hold
    jointly (Bonferroni: 95% for the family), and the share is undefined (the probe is at
    chance too)."""
    measures = _text_measures(
        random_vlm.encoder,
        _shuffled(random_vlm.features),
        lung,
        confidence=0.9995,
        n_resamples=4000,
    )
    assert measures["variants"] == ["given", "expert", "lay", "synonym 1", "synonym 2"]
    assert len(measures["chance"]) == 5 * (len(lung.prompts) + len(NEUTRAL_PROMPTS) + 2) + 3
    assert len(measures["chance"]) + len(measures["zero"]) < 0.05 / (1 - 0.9995)
    for estimate in measures["chance"]:
        assert _contains(estimate, CHANCE), estimate
    difference, zero_shot, share, margin = measures["zero"]
    for estimate in (difference, zero_shot, margin):
        assert _contains(estimate, 0.0), estimate
    assert _contains(measures["probe"][0], 0.0)
    assert np.isnan(share.value) and np.isnan(share.ci_low)


def test_random_text_towers_reach_nothing_of_real_labels(random_vlm, lung, tmp_path):
    """Real labels: the random image tower carries the class (the probe beats chance), and a
    random text tower is a fixed random classifier of those images -- one draw may split the
    classes' clusters, but which name lands on which cluster is random, so over independent
    draws of the text weights zero-shot is at chance, expert - lay at 0, the share at 0."""
    draws = {"chance": [], "difference": [], "share": []}
    for seed in range(8):
        folder = tmp_path / f"draw{seed}"
        with_new_text_tower(random_vlm.kind, random_vlm.model, folder, seed=100 + seed)
        encoder = create_encoder(f"local:{folder}", domain="general")
        measures = _text_measures(encoder, random_vlm.features, lung, n_resamples=200)
        draws["chance"].append(np.mean([e.value for e in measures["chance"]]) - CHANCE)
        draws["difference"].append(measures["zero"][0].value)
        draws["share"].append(measures["zero"][2].value)
        assert measures["probe"][0].ci_low > 0.1
    for name, values in draws.items():
        values = np.asarray(values)
        half_width = stats.t.ppf(0.995, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
        print(f"{random_vlm.kind} {name}: {values.mean():+.3f} +- {half_width:.3f}")
        assert abs(values.mean()) <= half_width, (name, values)


def test_intervals_are_the_stats_bootstrap_of_each_prompt(random_vlm, lung):
    """Every per-prompt interval is exactly :func:`bootstrap` of that prompt's predictions."""
    from medprobe.analysis import metrics

    fs = random_vlm.features
    ps = PromptSensitivity(random_vlm.encoder, templates=lung.prompts).fit(fs)
    test = fs.split("test")
    cells = [s for p, s in ps.results_ if p.get("template") not in (None, "ensemble")]
    for t, scores in enumerate(cells):
        stat = metrics.statistic(metrics.balanced_accuracy, test.labels, ps.y_pred_[0, t], 3)
        assert scores["balanced_accuracy"] == bootstrap(stat, test.labels, seed=0)


# ------------------------------------------------- constructed text tower: nearest centroid


@pytest.fixture(scope="module")
def aligned_vlm(random_vlm, lung, tmp_path_factory):
    """The same model with its text projection solved so that every prompt the analyses use
    (templates, one of them naming the class twice, x every name variant) embeds to the
    class mean of the L2-normalised training image features."""
    folder = tmp_path_factory.mktemp(f"aligned-{random_vlm.kind}") / "model"
    shutil.copytree(random_vlm.folder, folder)
    model = copy.deepcopy(random_vlm.model)
    fs = random_vlm.features
    train = fs.split("train")
    x = unit_rows(train.features)
    means = np.stack([x[train.labels == c].mean(axis=0) for c in range(3)])
    templates = [*lung.prompts, ONCE, TWICE]
    variants = name_variants(lung.class_names, lung.class_terms())
    pairs = {
        fill(t, name): means[c]
        for t in dict.fromkeys([*templates, *NEUTRAL_PROMPTS])
        for v in variants
        for c, name in enumerate(v.names)
    }
    error = align_text_to(model, folder, list(pairs), np.stack(list(pairs.values())))
    assert error < 1e-4
    encoder = create_encoder(f"local:{folder}", domain="medical")
    assert encoder.identity() != random_vlm.encoder.identity()
    test = fs.split("test")
    nearest = cdist(unit_rows(test.features), means, "cosine").argmin(axis=1)
    return SimpleNamespace(encoder=encoder, templates=templates, nearest=nearest)


def test_class_mean_text_tower_is_the_nearest_centroid_classifier(random_vlm, aligned_vlm, lung):
    """Zero-shot equals cosine nearest-centroid for every prompt; spreads and expert - lay are
    exactly 0; the share is 1 against nearest-centroid and, against the linear probe, the
    nearest-centroid classifier's share (about 1 where the probe reads no more than the class
    means: open_clip's random features here; 0.6 for transformers', where it reads more)."""
    fs, encoder, terms = random_vlm.features, aligned_vlm.encoder, lung.class_terms()
    # the image tower is untouched: the random model's features are this model's too
    batch = torch.stack([encoder.preprocess(lung.load_image(r)) for r in lung.records[:4]])
    np.testing.assert_array_equal(
        encoder.encode_images(batch), random_vlm.encoder.encode_images(batch)
    )
    ps = PromptSensitivity(encoder, templates=aligned_vlm.templates, terms=terms).fit(fs)
    assert (ps.y_pred_ == aligned_vlm.nearest).all()  # every template, every variant
    assert (ps.ensemble_pred_ == aligned_vlm.nearest).all()
    for _, scores in ps.results_:
        if "balanced_accuracy_sd" in scores:
            sd = scores["balanced_accuracy_sd"]
            assert [sd.value, sd.ci_low, sd.ci_high] == pytest.approx([0, 0, 0], abs=1e-12)
    te = Terminology(encoder, templates=aligned_vlm.templates, terms=terms).fit(fs)
    diff = te.difference_
    assert (diff.difference, diff.ci_low, diff.ci_high) == (0.0, 0.0, 0.0)

    expert = [terms[c].expert for c in lung.class_names]
    test = fs.split("test")
    # against the nearest-centroid classifier itself the text reaches everything: share 1
    reference = TextShare(
        encoder,
        templates=aligned_vlm.templates,
        class_names=expert,
        linear_predictions=aligned_vlm.nearest,
    ).fit(fs)
    one = reference.share_
    assert [one.value, one.ci_low, one.ci_high] == pytest.approx([1, 1, 1], abs=1e-12)
    # against the linear probe: (BA_nearest - chance) / (BA_linear - chance), by hand
    ts = TextShare(encoder, templates=aligned_vlm.templates, class_names=expert).fit(fs)
    assert (ts.y_pred_ == aligned_vlm.nearest).all()
    linear = LinearProbe(seed=0).fit(fs).y_pred_
    by_hand = (balanced_accuracy_score(test.labels, aligned_vlm.nearest) - CHANCE) / (
        balanced_accuracy_score(test.labels, linear) - CHANCE
    )
    share = ts.share_
    print(f"{random_vlm.kind}: share {share.value:.3f} [{share.ci_low:.3f}, {share.ci_high:.3f}]")
    assert share.value == pytest.approx(by_hand, abs=1e-12)
    margins = [s["cosine_margin"] for p, s in ts.results_ if "class" in p]
    assert len(margins) == 3 and all(m.ci_low > 0 for m in margins)


def test_a_template_naming_the_class_twice_changes_no_bookkeeping(
    random_vlm, aligned_vlm, lung, monkeypatch
):
    once, twice = ONCE, TWICE
    assert fill(twice, "lung_n") == "lung_n: an H&E stained image of lung_n."
    assert fill("{} {{braces}} {0}", "x") == "x {{braces}} {0}"  # nothing else is interpreted
    fs, encoder = random_vlm.features, random_vlm.encoder
    encoded: list[str] = []
    real = type(encoder).encode_texts

    def spy(self, texts):
        encoded.extend(texts)
        return real(self, texts)

    monkeypatch.setattr(type(encoder), "encode_texts", spy)
    clear_memory()
    fit = PromptSensitivity(encoder, templates=[once, twice], extra_templates=(), terms={}).fit(fs)
    # one template is one template: one row each, named as written
    cells = [p["template"] for p, s in fit.results_ if "balanced_accuracy" in s]
    assert cells == [once, twice, "ensemble"]
    assert len(fit.results_) == 5  # 2 templates, ensemble, spread over templates, over names
    expected = [fill(t, n) for t in (once, twice) for n in lung.class_names]
    assert sorted(encoded) == sorted(expected)  # each prompt encoded once, both {} filled
    # the doubled template's numbers are those of its prompts, computed by hand
    by_hand = unit_rows(encoder.encode_texts([fill(twice, n) for n in lung.class_names]))
    test = fs.split("test")
    predicted = (unit_rows(test.features) @ by_hand.T).argmax(axis=1)
    assert (fit.y_pred_[0, 1] == predicted).all()
    # the zero_shot analysis takes it too, and agrees with the ensemble of that template
    alone = ZeroShot(encoder, templates=[twice]).fit(fs)
    assert (alone.y_pred_ == predicted).all()

    # with the constructed tower, naming the class once or twice gives the same numbers
    aligned = PromptSensitivity(
        aligned_vlm.encoder, templates=[once, twice], extra_templates=(), terms={}
    ).fit(fs)
    first, second = (s for p, s in aligned.results_[:2])
    assert first == second


# -------------------------------------------------------------- the text-embedding cache


def test_text_embeddings_are_cached_by_encoder_identity_and_exact_prompt(
    random_vlm, aligned_vlm, tmp_path, monkeypatch, capsys
):
    calls: list[list[str]] = []
    kind = type(random_vlm.encoder)
    assert type(aligned_vlm.encoder) is kind
    real = kind.encode_texts

    def spy(self, texts):
        calls.append(list(texts))
        return real(self, texts)

    monkeypatch.setattr(kind, "encode_texts", spy)
    encoder = random_vlm.encoder
    prompts = ["a lung.", "a lung. ", "A lung."]  # exact strings: three prompts
    clear_memory()
    first = TextEmbeddings(tmp_path / "text").encode(encoder, prompts)
    assert calls == [prompts]
    np.testing.assert_array_equal(first, encoder.encode_texts(prompts))
    calls.clear()

    clear_memory()  # a rerun (new process): served from the folder, not encoded
    cache = TextEmbeddings(tmp_path / "text")
    np.testing.assert_array_equal(cache.encode(encoder, prompts[::-1]), first[::-1])
    assert calls == [] and cache.encoded == 0
    cache.encode(encoder, [*prompts, "a new prompt."])
    assert calls == [["a new prompt."]]  # only what is new
    calls.clear()
    cache.encode(aligned_vlm.encoder, prompts[:1])  # another identity: its own embedding
    assert calls == [prompts[:1]]

    # a damaged file is moved aside and its prompts encoded again, never served
    clear_memory()
    calls.clear()
    files = sorted((tmp_path / "text" / encoder.identity()).glob("*.npz"))
    assert len(files) == 2  # one per call that encoded something
    for path in files:
        path.write_bytes(path.read_bytes()[:-7] + b"garbage")
    again = TextEmbeddings(tmp_path / "text").encode(encoder, prompts)
    np.testing.assert_array_equal(again, first)
    assert calls == [prompts]
    assert "damaged" in capsys.readouterr().err
    assert len(list((tmp_path / "text" / encoder.identity()).glob("*.corrupt-*"))) == 2
    # the feature store does not mistake the text folder for foreign data
    FeatureStore(tmp_path).entries()
    assert text_key(encoder.identity(), "x") != text_key(aligned_vlm.encoder.identity(), "x")


# ------------------------------------------------------------------------- vocabulary


def test_bundled_vocabulary_covers_the_shipped_modalities_and_real_datasets(shared_data):
    from medprobe.datasets.medmnist import MEDMNIST_INFO

    assert set(MODALITY_PROMPTS) <= set(bundled_modalities())
    sources = vocabulary_sources()
    manifest = pd.read_csv(shared_data / "medsamples/MANIFEST.csv")
    sets = {
        name: (group.modality.iloc[0], sorted(set(group.label)))
        for name, group in manifest.groupby("dataset")
    }
    sets |= {f"medmnist:{k}": v for k, v in MEDMNIST_INFO.items()}
    for name, (modality, labels) in sets.items():
        terms = [bundled_terms(modality, label) for label in labels]
        assert all(terms), (name, [lab for lab, t in zip(labels, terms, strict=True) if not t])
        for kind in ("expert", "lay"):
            names = [getattr(t, kind) for t in terms]
            assert len(set(names)) == len(names), (name, kind, names)  # tell classes apart
        assert all(set(t.sources) <= set(sources) for t in terms)
    # the examples
    assert bundled_terms("dermoscopy", "nv").lay == "mole"
    assert bundled_terms("dermoscopy", "nv").expert == "melanocytic nevus"
    assert bundled_terms("brain mri", "glioma").lay == "brain tumor"
    assert bundled_terms("chest x-ray", "PNEUMONIA").lay == "lung infection"
    # labels mean different things in different modalities
    assert bundled_terms("fundus", "normal").expert != bundled_terms("chest x-ray", "normal").expert
    assert bundled_terms("unknown", "normal") is None


def test_vocabulary_overrides_from_python_and_study_files(tmp_path):
    from medprobe.study.config import load_config
    from medprobe.study.runner import open_datasets

    ds = synthetic("dermoscopy", 12, size=32)
    assert ds.class_terms()["benign"].lay == "harmless mole"
    ds.vocabulary = {"benign": {"lay": "a mole that is fine", "synonyms": ["ok mole"]}}
    terms = ds.class_terms()["benign"]
    assert terms.lay == "a mole that is fine" and terms.expert == "benign melanocytic lesion"
    assert terms.synonyms == ("ok mole",) and "user" in terms.sources
    with pytest.raises(MedprobeError, match="does not have"):
        ds.vocabulary = {"melanoma": {"lay": "x"}}
    with pytest.raises(MedprobeError, match="vocabulary of class 'benign'"):
        ds.vocabulary = {"benign": {"layman": "x"}}

    study = {
        "name": "v",
        "models": ["pixels"],
        "datasets": [
            {
                "name": "d",
                "synthetic": {"kind": "ultrasound", "n": 12, "size": 32},
                "vocabulary": {"malignant": {"expert": "BI-RADS 5 mass"}},
            },
            {
                "name": "bad",
                "synthetic": {"kind": "ultrasound", "n": 12, "size": 32},
                "vocabulary": {"cyst": {"lay": "fluid bubble"}},
            },
        ],
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    opened, errors = open_datasets(load_config(tmp_path / "s.yaml"))
    assert opened["d"].class_terms()["malignant"].expert == "BI-RADS 5 mass"
    assert opened["d"].class_terms()["malignant"].lay == "breast cancer"  # bundled, kept
    assert "bad" not in opened and "does not have" in errors[0].error


# ------------------------------------------------------- vision-only encoders, registry


def test_vision_only_encoders_get_a_no_text_tower_row(tmp_path):
    ds = synthetic("dermoscopy", 20, size=32)
    encoder = create_encoder("pixels")
    fs = extract(encoder, ds, show_progress=False)
    unit = UnitInput(fs, encoder, ds, RowContext.of(encoder, ds, 0, fs))
    for name in ("prompt_sensitivity", "terminology", "text_share"):
        entry = registry.get_analysis(name)
        assert name in registry.listed_analyses()
        (row,) = entry.run(unit)
        assert (row.analysis, row.metric) == (name, "no_text_tower")
        assert np.isnan(row.value) and np.isnan(row.ci_low)
        assert "vision-only encoder (no text tower)" in row.error


# ------------------------------------------------------------- LLM2CLIP: the spy on the LLM


def test_llm2clip_text_tower_is_built_only_for_text_analyses(tmp_path, hf_cache, monkeypatch):
    from medprobe.encoders.transformers_loader import LLM2CLIPEncoder
    from medprobe.study.runner import Plan, run_unit
    from test_encoders_zoo import _llm2clip_repo

    _, commit = _llm2clip_repo(tmp_path, hf_cache)
    built: list[list[str]] = []
    real = LLM2CLIPEncoder.text_forward

    def spy(self, texts):
        built.append(list(texts))
        return real(self, texts)  # llm2vec is not installed: one clear sentence

    monkeypatch.setattr(LLM2CLIPEncoder, "text_forward", spy)
    encoder = create_encoder("llm2clip-openai-b16", trust_remote_code=True, revision=commit)
    ds = synthetic("dermoscopy", 30, size=32)
    image_only = Plan(analyses=("separability", "knn", "linear_probe", "few_shot"))
    unit = run_unit(encoder, ds, image_only)
    assert {"separability", "knn", "linear_probe"} <= {r.analysis for r in unit.rows}
    assert built == [] and encoder._tokenizer is None  # the LLM was never built
    texts = run_unit(encoder, ds, Plan(analyses=("linear_probe", "prompt_sensitivity")))
    assert built  # the spy sees the text tower called ...
    (error,) = [r for r in texts.rows if r.analysis == "error"]
    assert "prompt_sensitivity failed" in error.error and "llm2vec" in error.error
    assert any(r.analysis == "linear_probe" for r in texts.rows)  # ... and the rest goes on


# ------------------------------------------------------------------------------ a study


@pytest.fixture(scope="module")
def text_study(tmp_path_factory):
    from medprobe.report.html import write_report
    from medprobe.study.config import load_config
    from medprobe.study.runner import run_study

    tmp = tmp_path_factory.mktemp("text-study")
    ARCHITECTURES["open_clip"](tmp / "med-clip", seed=1)
    ARCHITECTURES["open_clip"](tmp / "gen-clip", seed=2)
    study = {
        "name": "text side",
        "models": [
            {"name": f"local:{tmp / 'med-clip'}", "domain": "medical"},
            {"name": f"local:{tmp / 'gen-clip'}", "domain": "general"},
            "pixels",
        ],
        "datasets": [
            {
                "name": "synth",
                "synthetic": {"kind": "dermoscopy", "n": 90, "size": 32},
                "vocabulary": {"malignant": {"lay": "bad mole"}},
            }
        ],
        "analyses": [
            "linear_probe",
            "prompt_sensitivity",
            "terminology",
            "text_share",
        ],
        "embeddings": ["pca"],
        "cache": str(tmp / "cache"),
        "thumbnails": 20,
    }
    (tmp / "study.yaml").write_text(yaml.safe_dump(study))
    config = load_config(tmp / "study.yaml")
    out = tmp / "out"
    clear_memory()
    outcome = run_study(config, out, show_progress=False)
    write_report(outcome, out)
    return SimpleNamespace(tmp=tmp, config=config, out=out, outcome=outcome)


def test_study_writes_text_side_rows_and_caches_prompts(text_study, monkeypatch):
    results = pd.read_parquet(text_study.out / "results.parquet")
    assert not (results.analysis == "error").any(), results[results.analysis == "error"].error
    vlms = ["med-clip", "gen-clip"]  # local models are named by their folder
    for name in ("prompt_sensitivity", "terminology", "text_share"):
        rows = results[results.analysis == name]
        assert set(rows[rows.metric != "no_text_tower"].encoder) == set(vlms), name
        skip = rows[rows.encoder == "pixels"]
        assert list(skip.metric) == ["no_text_tower"] and skip.error.str.contains("pixels").all()
    ps = results[(results.analysis == "prompt_sensitivity") & (results.encoder == vlms[0])]
    assert {"given", "expert", "lay", "synonym 1", "synonym 2"} == set(
        ps.param_class_names.dropna()
    )
    share = results[(results.analysis == "text_share") & (results.metric == "text_share")]
    assert set(share.param_class_names) == {"expert"} and set(share.split) == {"test"}
    ok = results[results.metric != "no_text_tower"].dropna(subset=["ci_low"])
    assert (ok.ci_low <= ok.value + 1e-12).all() and (ok.value <= ok.ci_high + 1e-12).all()

    # every prompt is on disk now: a fresh run with the same cache encodes nothing,
    # including the study file's own lay name for "malignant"
    from medprobe.study.runner import run_study

    encoded = []
    from medprobe.encoders.open_clip_loader import OpenClipEncoder

    real = OpenClipEncoder.encode_texts
    monkeypatch.setattr(
        OpenClipEncoder, "encode_texts", lambda self, t: encoded.append(t) or real(self, t)
    )
    clear_memory()
    again = run_study(text_study.config, text_study.tmp / "again", show_progress=False)
    assert encoded == []
    assert len(again.results) == len(text_study.outcome.results)
    store = TextEmbeddings(text_study.tmp / "cache" / "text")
    encoder = create_encoder(text_study.config.models[0].name, domain="medical")
    template = synthetic("dermoscopy", 2, size=32).prompts[0]
    store.encode(encoder, [fill(template, "bad mole")])
    assert store.encoded == 0 and encoded == []


def test_report_has_the_text_side_section(text_study):
    html = (text_study.out / "report.html").read_text()
    section = html[html.index('<section id="text-side">') : html.index('<section id="similarity">')]
    for table in ("text-spread", "text-terminology", "text-share", "text-margins", "text-skipped"):
        assert f'id="{table}"' in section, table
    assert section.count("plotly-graph-div") == 3  # spread, expert - lay, share
    assert "vision-only encoder (no text tower)" in section
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader"],
        )
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((text_study.out / "report.html").as_uri())
        page.wait_for_selector("#text-side .main-svg")
        assert page.locator("#text-side .figure.plot .main-svg").count() >= 3
        assert page.locator("#text-share tbody tr").count() == 2
        assert errors == []
        browser.close()


def test_compare_text_pairs_medical_and_general_models(text_study):
    from typer.testing import CliRunner

    from medprobe.cli import app
    from medprobe.study.text_compare import compare_text

    (comparison,) = compare_text(text_study.out, n_resamples=200)
    assert comparison.dataset == "synth"
    assert set(comparison.models.encoder) == {"med-clip", "gen-clip"}
    assert set(comparison.models.measure) == {
        "zero-shot BA (ensemble)",
        "template SD",
        "expert - lay",
        "text share",
    }
    assert list(comparison.domains.measure) == ["zero-shot BA", "expert - lay", "text share"]
    assert (comparison.domains[["medical", "general"]] == 1).all().all()
    results = pd.read_parquet(text_study.out / "results.parquet")
    shares = results[results.metric == "text_share"]
    assert set(shares.n) == {comparison.n} and comparison.n > 10  # the same test images
    result = CliRunner().invoke(
        app, ["compare", str(text_study.out), "--text", "--resamples", "200"]
    )
    assert result.exit_code == 0, result.output
    assert "medical - general" in result.output and "text share" in result.output
