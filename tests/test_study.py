"""Studies from YAML: real images, resume, failing models, the report in a real browser."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from medprobe.analysis import registry, suite
from medprobe.report import paper_figures
from medprobe.report.outputs import load_outcome
from medprobe.study.config import load_config
from medprobe.study.runner import run_study

CHROMIUM = Path("/usr/bin/chromium")


def _study(tmp_path: Path, shared: Path, models=("pixels", "handcrafted", "no-such-model")) -> Path:
    config = {
        "name": "ci study",
        "seed": 0,
        "models": list(models),
        "datasets": [
            {
                "name": "busi",
                "manifest": str(shared / "medsamples/MANIFEST.csv"),
                "where": {"dataset": "busi_256"},
            },
            {
                "name": "kermany",
                "path": str(shared / "medsamples/kermany_pediatric_cxr_224"),
                "modality": "chest x-ray",
            },
            {
                "name": "lc25000",
                "manifest": str(shared / "medsamples/MANIFEST.csv"),
                "where": {"dataset": "lc25000_lung_histopathology_224"},
            },
        ],
        "embeddings": ["pca", "tsne"],
        "cache": str(tmp_path / "cache"),
        "thumbnails": 200,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("study")
    config = load_config(_study(tmp, shared_data))
    out = tmp / "out"
    outcome = run_study(config, out, show_progress=False)
    from medprobe.report.html import write_report

    write_report(outcome, out)
    return config, out, outcome


def test_study_runs_every_analysis_and_records_the_failing_model(finished):
    _, out, _ = finished
    results = pd.read_parquet(out / "results.parquet")
    assert set(results.dataset) == {"busi", "kermany", "lc25000"}
    ok = results[results.analysis != "error"]
    assert set(ok.encoder) == {"pixels", "handcrafted"}
    assert {"separability", "knn", "linear_probe", "few_shot", "geometry", "similarity"} <= set(
        ok.analysis
    )
    errors = results[results.analysis == "error"]
    assert set(errors.encoder) == {"no-such-model"} and len(errors) == 3
    assert errors.error.str.contains("unknown encoder").all()
    for name in ("results.csv", "report.html", "run.json", "views.json"):
        assert (out / name).is_file()
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in (
        "embeddings_busi_pca",
        "embeddings_lc25000_tsne",
        "cka_busi",
        "domain_summary",
        "linear_probe_balanced_accuracy",
    ):
        assert {f"{stem}.png", f"{stem}.pdf", f"{stem}.svg"} <= figures, stem
    # lc25000 histopathology is easy even for hand-crafted colour and texture features.
    lc = ok[
        (ok.dataset == "lc25000")
        & (ok.encoder == "handcrafted")
        & (ok.analysis == "linear_probe")
        & (ok.metric == "balanced_accuracy")
    ]
    assert lc.value.iloc[0] > 0.7


def test_rerun_resumes_without_recomputing(finished, monkeypatch):
    config, out, outcome = finished
    calls = []
    real = suite.data_counts

    def counting(unit):
        calls.append(unit.dataset.name)
        return real(unit)

    # a fresh entry resolves its target again, to the spy
    monkeypatch.setattr(suite, "data_counts", counting)
    monkeypatch.setitem(registry._ANALYSES, "data", replace(registry.get_analysis("data")))
    from medprobe.encoders.baselines import HandcraftedEncoder, PixelEncoder

    def no_model(self, batch):
        raise AssertionError("features were recomputed")

    monkeypatch.setattr(HandcraftedEncoder, "encode_images", no_model)
    again = run_study(config, out, show_progress=False)
    assert calls == []
    order = ["encoder", "encoder_b", "dataset", "analysis", "metric", "param_k", "param_shots"]

    def same(frame):  # a rerun is another run (run_id, started_at); the results are the same
        frame = frame.drop(columns=["run_id", "started_at"])
        return frame.sort_values(order).reset_index(drop=True)

    pd.testing.assert_frame_equal(same(again.results), same(outcome.results))
    assert again.results.run_id.iloc[0] != outcome.results.run_id.iloc[0]
    # An interrupted run: one (model, dataset) unit never finished. Only it is redone.
    units = sorted((out / "units").glob("*.json"))
    units[0].unlink()
    monkeypatch.setattr(PixelEncoder, "encode_images", no_model)
    run_study(config, out, show_progress=False)
    assert len(calls) == 1


#: ``medprobe ...`` with a cross-model analysis (it runs on a rerun too) that warns the way
#: libraries do mid-run (umap's "n_jobs value 1 overridden ...").
WARNING_CLI = """
import sys, warnings
from dataclasses import replace
from medprobe.analysis import registry, suite
real = suite.similarity
def similarity(given):
    warnings.warn("n_jobs value 1 overridden to 1 by setting random_state", stacklevel=2)
    return real(given)
suite.similarity = similarity
registry._ANALYSES["similarity"] = replace(registry.get_analysis("similarity"))
from medprobe.cli import app
app(sys.argv[1:], prog_name="medprobe")
"""


def test_library_warnings_go_to_run_json_not_to_the_terminal(finished, tmp_path):
    _, out, _ = finished
    study = yaml.safe_load((out.parent / "study.yaml").read_text())
    study["models"] = ["pixels", "handcrafted"]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    shutil.copytree(out / "units", tmp_path / "out" / "units")  # a warm rerun
    rerun = ["run", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-c", WARNING_CLI, *rerun],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    assert "overridden" not in result.stdout + result.stderr
    logged = json.loads((tmp_path / "out" / "run.json").read_text())["warnings"]
    assert logged == ["UserWarning: n_jobs value 1 overridden to 1 by setting random_state"]


def test_figures_are_drawn_again_only_when_what_they_show_changes(finished, monkeypatch, tmp_path):
    _, _, outcome = finished
    folder = tmp_path / "figures"
    first = paper_figures.write_figures(outcome, folder)
    drawn = []
    real = paper_figures._save

    def counting(fig, where, stem):
        drawn.append(stem)
        return real(fig, where, stem)

    monkeypatch.setattr(paper_figures, "_save", counting)
    rerun = copy.copy(outcome)  # a rerun of the finished study: another run id, same results
    rerun.results = outcome.results.assign(run_id="another", started_at="later")
    assert paper_figures.write_figures(rerun, folder) == first and drawn == []
    # A file changed on disk is not served: everything is drawn again.
    png = next(p for p in first if p.suffix == ".png")
    png.write_bytes(b"not the figure")
    assert paper_figures.write_figures(outcome, folder) == first and drawn
    assert png.read_bytes().startswith(b"\x89PNG")
    # Other inputs, other figures; files only the old inputs produced go.
    drawn.clear()
    fewer = copy.copy(outcome)
    fewer.views = [v for v in outcome.views if v.dataset != "busi"]
    names = {p.name for p in paper_figures.write_figures(fewer, folder)}
    assert drawn and "embeddings_busi_pca.png" not in names
    assert not (folder / "embeddings_busi_pca.png").exists()
    assert (folder / "embeddings_kermany_pca.png").is_file()


def test_report_rebuilds_from_stored_results(finished):
    _, out, outcome = finished
    (out / "report.html").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "medprobe.cli", "report", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "report.html").is_file()
    assert load_outcome(out).results.shape == outcome.results.shape


def test_compare_ranks_and_tests(finished):
    from medprobe.study.compare import compare

    _, out, _ = finished
    comparisons = compare(out, n_permutations=999)
    assert {c.dataset for c in comparisons} == {"busi", "kermany", "lc25000"}
    for c in comparisons:
        assert list(c.ranking.value) == sorted(c.ranking.value, reverse=True)
        assert len(c.pairs) == 1 and 0 <= c.pairs.p_holm.iloc[0] <= 1
        assert c.domains is None  # baselines only: no medical or general model
    result = subprocess.run(
        [sys.executable, "-m", "medprobe.cli", "compare", str(out), "--permutations", "199"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "paired on the same test images" in result.stdout
    assert "medical vs general" in result.stdout
    saved = json.loads((out / "compare.json").read_text())
    assert saved["metric"] == "balanced_accuracy"
    assert {d["dataset"] for d in saved["datasets"]} == {"busi", "kermany", "lc25000"}
    assert (out / "compare.csv").is_file()
    printed = subprocess.run(
        [
            sys.executable,
            "-m",
            "medprobe.cli",
            "compare",
            str(out),
            "--json",
            "--permutations",
            "199",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(printed.stdout) == saved


def test_bundled_paper_study_without_weights_lists_what_to_download(tmp_path, shared_data):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medprobe.cli",
            "run",
            "paper-2601.14774",
            "--out",
            str(tmp_path),
            "--data-root",
            str(shared_data.parent),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # (Other tests put fake BiomedCLIP, CLIP B/16, ... into the test HF cache; these never are.)
    for fragment in (
        "hf download google/medsiglip-448",
        "hf download suinleelab/monet",
        "hf download openai/clip-vit-large-patch14-336",
        "llm2clip-openai-l14-336",
    ):
        assert fragment in result.stderr
    # every shared dataset is found (PMC-CLIP's weights live in a hub *dataset* repository)
    lines = result.stderr.splitlines()
    assert not [line for line in lines if "dataset" in line and "hf " not in line]


def test_bad_study_file_is_one_line(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x\nmodels: [pixels]\ndatasets: [{name: d}]\n")
    result = subprocess.run(
        [sys.executable, "-m", "medprobe.cli", "run", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "exactly one of path, manifest, medmnist, webdataset, hf_dataset, synthetic" in (
        result.stderr.replace("\n", " ")
    )


# ----------------------------------------------------------------- the report in a browser


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """A small study whose labels try to inject script into the report."""
    tmp = tmp_path_factory.mktemp("hostile")
    labels = ["<script>window.__pwned=1</script>", "<img src=x onerror=window.__pwned=2>"]
    rows = []
    for i in range(40):
        path = tmp / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (32, 32), (200 if i % 2 else 20, 90, 40 + i)).save(path)
        rows.append({"path": f"img/{i}.png", "label": labels[i % 2]})
    pd.DataFrame(rows).to_csv(tmp / "m.csv", index=False)
    config = {
        "name": "<b>hostile</b> study",
        "models": ["pixels", "handcrafted"],
        "datasets": [{"name": "evil<svg onload=alert(1)>", "manifest": str(tmp / "m.csv")}],
        "embeddings": ["pca"],
        "cache": str(tmp / "cache"),
    }
    (tmp / "s.yaml").write_text(yaml.safe_dump(config))
    out = tmp / "out"
    from medprobe.report.html import write_report

    write_report(run_study(load_config(tmp / "s.yaml"), out, show_progress=False), out)
    return out / "report.html", labels


def test_report_in_headless_chromium(hostile_report):
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    report, labels = hostile_report
    console_errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--enable-unsafe-swiftshader",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: console_errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        page.wait_for_selector("#views-plot .main-svg")
        assert console_errors == []
        assert all(u.startswith(("file:", "data:")) for u in requests), requests
        assert page.locator(".figure.plot .main-svg").count() >= 3  # bars, heatmap, views
        assert page.locator("#summary-table tbody tr").count() == 2
        assert page.evaluate("window.__pwned") is None
        text = page.locator("body").inner_text()
        for label in labels:
            assert label in text  # shown as text, not run
        assert "evil<svg onload=alert(1)>" in text

        # Hover the first point of the 2-D view: its thumbnail appears.
        page.locator("#views-plot").scroll_into_view_if_needed()
        x, y = page.evaluate("""() => {
            const gd = document.getElementById('views-plot');
            const trace = gd._fullData[0], L = gd._fullLayout, box = gd.getBoundingClientRect();
            return [box.left + L._size.l + L.xaxis.d2p(trace.x[0]),
                    box.top + L._size.t + L.yaxis.d2p(trace.y[0])];
        }""")
        page.mouse.move(x - 30, y - 30)
        page.mouse.move(x, y, steps=5)
        page.wait_for_selector("#thumb", state="visible", timeout=5000)
        assert page.locator("#thumb-img").get_attribute("src").startswith("data:image/jpeg")
        assert "img/" in page.locator("#thumb-text").inner_text()

        # Sorting a table reorders its rows.
        def column(table: str, index: int) -> list[str]:
            cells = page.locator(f"{table} tbody tr td:nth-child({index + 1})")
            return [cells.nth(i).inner_text() for i in range(cells.count())]

        models = column("#summary-table", 1)
        assert len(models) == 2
        header = page.locator("#summary-table th").nth(1)
        header.click()  # first click: ascending, second: descending
        assert column("#summary-table", 1) == sorted(models)
        header.click()
        assert column("#summary-table", 1) == sorted(models, reverse=True)
        # Switching the model re-renders the view.
        page.select_option("#sel-encoder", "handcrafted")
        page.wait_for_selector("#views-plot .main-svg")
        assert console_errors == []
        browser.close()


def test_demo_config_is_bundled():
    config = load_config("demo")
    assert [m.name for m in config.models] == ["pixels", "handcrafted", "random-vit"]
    assert len(config.datasets) == 3
    # bundled in the installed package, not read from the checkout
    assert resources.files("medprobe.configs").joinpath("demo.yaml").is_file()


def test_rebuilt_report_keeps_thumbnails(finished):
    _, out, outcome = finished
    rebuilt = load_outcome(out)
    assert rebuilt.thumbnails.keys() == outcome.thumbnails.keys()
    assert any(rebuilt.thumbnails.values())


@pytest.mark.parametrize("width", [390, 1366])
def test_report_fits_a_phone_and_a_laptop(hostile_report, width):
    """Nothing is wider than the viewport: wide tables scroll inside their own box."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    report, _ = hostile_report
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(report.as_uri())
        page.wait_for_selector("#views-plot .main-svg")
        page_width = page.evaluate("() => document.documentElement.scrollWidth")
        assert page_width <= width, f"the page is {page_width} px wide at {width} px"
        widest = page.evaluate(
            """() => Math.max(...[...document.querySelectorAll('table')].map(
                t => t.getBoundingClientRect().right))"""
        )
        assert widest <= width + 1
        if width == 390:  # the summary table is wider than a phone: it scrolls in its box
            inner = page.evaluate(
                "() => { const t = document.getElementById('summary-table');"
                " return [t.scrollWidth, t.clientWidth]; }"
            )
            assert inner[0] > inner[1]
        browser.close()
