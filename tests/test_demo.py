"""End to end: the demo pipeline is wired honestly (signal found where it exists, not elsewhere)."""

import json

import pandas as pd
import pytest

from medprobe.analysis.rows import SCHEMA, read_results
from medprobe.datasets import synthetic
from medprobe.study import run_grid, write_outputs


@pytest.fixture(scope="module")
def outcome():
    datasets = [
        synthetic("dermoscopy", 120, difficulty="easy", size=96, name="easy"),
        synthetic("dermoscopy", 120, difficulty="none", size=96, name="nosignal"),
    ]
    return run_grid(["pixels", "handcrafted"], datasets, show_progress=False)


def _value(results: pd.DataFrame, dataset: str, encoder: str, analysis: str, metric: str):
    row = results[
        (results.dataset == dataset)
        & (results.encoder == encoder)
        & (results.analysis == analysis)
        & (results.metric == metric)
        & ((results.param_k == 10).fillna(False) | (results.analysis != "knn"))
    ]
    assert len(row) == 1
    return row.iloc[0]


@pytest.mark.parametrize("encoder", ["pixels", "handcrafted"])
def test_easy_setting_is_separated(outcome, encoder):
    lp = _value(outcome.results, "easy", encoder, "linear_probe", "balanced_accuracy")
    assert lp.value > 0.8 and lp.ci_low > 0.6
    # Euclidean: cosine on raw hand-crafted descriptors is dominated by skin tone (see below)
    sil = _value(outcome.results, "easy", encoder, "separability", "silhouette_euclidean")
    assert sil.ci_low > 0


def test_knn_finds_the_signal_in_pixels(outcome):
    # Cosine kNN on raw hand-crafted descriptors is weak (skin tone dominates distances), which
    # is why the linear probe standardises; pixels carry lesion size and darkness directly.
    assert _value(outcome.results, "easy", "pixels", "knn", "balanced_accuracy").value > 0.75


@pytest.mark.parametrize("encoder", ["pixels", "handcrafted"])
def test_no_signal_setting_is_at_chance(outcome, encoder):
    for analysis in ("linear_probe", "knn"):
        row = _value(outcome.results, "nosignal", encoder, analysis, "balanced_accuracy")
        assert row.ci_low < 0.5 < row.ci_high
        assert row.value < 0.7
    easy = _value(outcome.results, "easy", encoder, "separability", "silhouette_cosine")
    none = _value(outcome.results, "nosignal", encoder, "separability", "silhouette_cosine")
    assert none.value < easy.value
    assert abs(none.value) < 0.05


def test_results_table_is_tidy(outcome):
    frame = outcome.results
    assert list(frame.columns) == list(SCHEMA)
    params = [c for c in frame.columns if c.startswith("param_")]
    key = ["encoder", "encoder_b", "dataset", "analysis", "metric", *params]
    assert not frame.duplicated(key).any()
    # every interval contains its estimate (the row builder enforces it)
    bounded = frame[frame.ci_low.notna()]
    assert (bounded.ci_low <= bounded.value).all() and (bounded.value <= bounded.ci_high).all()
    assert set(frame.analysis) == {
        "data",
        "separability",
        "knn",
        "linear_probe",
        "few_shot",
        "geometry",
        "similarity",
        "prompt_sensitivity",
        "terminology",
        "text_share",
    }
    # the baselines have no text tower: the text side says so, one row per analysis and pair
    text_side = frame[frame.analysis.isin(["prompt_sensitivity", "terminology", "text_share"])]
    assert set(text_side.metric) == {"no_text_tower"} and text_side.value.isna().all()
    knn = frame[frame.analysis == "knn"]
    assert sorted(set(knn.param_k)) == [1, 5, 10, 20] and set(knn.param_metric) == {"cosine"}
    assert set(knn.split) == {"test"}
    # the one-line pivot of the schema: no duplicates, k sorted numerically
    table = knn[knn.metric == "balanced_accuracy"].pivot(
        index=["encoder", "param_k"], columns="dataset", values="value"
    )
    assert list(table.loc["pixels"].index) == [1, 5, 10, 20]
    linear = frame[frame.analysis == "linear_probe"]
    assert linear.selected_C.notna().all() and linear.param_k.isna().all()
    applied = frame[frame.metric != "no_text_tower"]  # those evaluated no image
    assert (frame.seed == 0).all() and (applied.n > 0).all()


def test_outputs_are_written(outcome, tmp_path):
    files = write_outputs(outcome, tmp_path)
    assert set(files) == {"results.csv", "results.parquet", "report.html", "figures"}
    # the same table, with the same dtypes, from both files (the written schema)
    from_csv, from_parquet = (
        read_results(files["results.csv"]),
        read_results(files["results.parquet"]),
    )
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    pd.testing.assert_frame_equal(from_parquet, outcome.results)
    assert dict(from_csv.dtypes.astype(str)) == {c: d for c, (d, _) in SCHEMA.items()}
    schema = json.loads((tmp_path / "results.schema.json").read_text())
    assert [f["name"] for f in schema["fields"]] == list(SCHEMA)
    html = files["report.html"].read_text()
    assert "<script src=" not in html  # self-contained: no CDN
    assert html.count('class="figure plot"') >= 1 + 3 + 2  # views, metric bars, CKA heatmaps
    pdfs = sorted(files["figures"].glob("*.pdf"))
    assert pdfs
    for pdf in pdfs:  # journals reject Type 3 fonts; TrueType (Type 42) embeds as FontFile2
        data = pdf.read_bytes()
        assert b"/Type3" not in data and b"/FontFile2" in data, pdf.name
    for svg in files["figures"].glob("*.svg"):  # text stays text (editable), not paths
        assert "<text" in svg.read_text(), svg.name
    assert "pixels" in html and "32px squash" in html  # encoders named with preprocessing
