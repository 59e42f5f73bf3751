"""The command line as a user meets it: one-line errors with exit code 2, no tracebacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medprobe import __version__


def run_cli(*args: str, timeout: float = 600, columns: int = 200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medprobe.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"medprobe {__version__}"
    help_text = run_cli("--help").stdout
    for command in ("demo", "synth"):
        assert command in help_text


def _assert_one_line_error(result, fragment):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and fragment in lines[0]


def test_demo_out_is_a_file(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    _assert_one_line_error(run_cli("demo", "--out", str(target)), "is a file")


def test_demo_out_unwritable(tmp_path):
    if os.geteuid() == 0:  # root ignores permission bits; /proc refuses everyone
        target = Path("/proc/medprobe-demo")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    _assert_one_line_error(run_cli("demo", "--out", str(target)), "cannot write")


def test_negative_n(tmp_path):
    _assert_one_line_error(run_cli("demo", "--out", str(tmp_path), "--n", "-5"), "--n")
    _assert_one_line_error(run_cli("synth", "--out", str(tmp_path), "--n", "-1"), "--n")


def test_unknown_option_is_one_line():
    _assert_one_line_error(run_cli("demo", "--bogus"), "--bogus")


def test_synth_writes_folder_and_manifest(tmp_path):
    result = run_cli(
        "synth",
        "--out",
        str(tmp_path),
        "--n",
        "8",
        "--kind",
        "ultrasound",
        "--text",
        "label",
        "--size",
        "64",
    )
    assert result.returncode == 0, result.stderr
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert len(manifest) == 8
    assert (manifest.text == manifest.label).all()
    assert all((tmp_path / p).is_file() for p in manifest.path)
    _assert_one_line_error(run_cli("synth", "--out", str(tmp_path), "--kind", "mri"), "--kind")


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), "--quick")
    assert result.returncode == 0, result.stderr
    for name in ("results.csv", "results.parquet", "report.html"):
        assert (tmp_path / name).is_file()
    results = pd.read_csv(tmp_path / "results.csv")
    assert set(results.encoder) == {"pixels", "handcrafted", "random-vit"}
    assert results.dataset.nunique() == 3
    # no library warning reaches the user's terminal (they are logged to run.json)
    noise = [
        line
        for line in result.stderr.splitlines()
        if "Warning" in line or "warn(" in line or "overridden" in line
    ]
    assert noise == []
    run = json.loads((tmp_path / "run.json").read_text())
    assert set(run["timings_s"]) >= {"extraction", "analyses", "embeddings"}
    assert isinstance(run["warnings"], list)
    # the closing summary: a table with intervals that fits an 80-column terminal
    narrow = run_cli("demo", "--out", str(tmp_path), "--quick", columns=80)
    assert narrow.returncode == 0, narrow.stderr
    table = [line for line in narrow.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert len(table) >= 6 and max(len(line) for line in table) <= 80
    assert "[95% CI]" in narrow.stdout and "] │" in narrow.stdout


def test_data_inspect_prints_the_class_table(shared_data):
    result = run_cli(
        "data",
        "inspect",
        str(shared_data / "medsamples" / "busi_256"),
        "--modality",
        "breast ultrasound",
    )
    assert result.returncode == 0, result.stderr
    for fragment in (
        "busi_256",
        "breast ultrasound",
        "benign",
        "malignant",
        "normal",
        "60",
        "256x256 (180)",
        "no problems found",
    ):
        assert fragment in result.stdout


def test_data_inspect_bad_path(tmp_path):
    _assert_one_line_error(run_cli("data", "inspect", str(tmp_path / "nope.csv")), "does not exist")


def test_models_lists_the_zoo():
    import json

    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    specs = json.loads(result.stdout)
    assert len(specs) >= 22 + 3
    assert sum(s["domain"] == "medical" for s in specs) >= 12
    medical = json.loads(run_cli("models", "--domain", "medical", "--json").stdout)
    assert {s["domain"] for s in medical} == {"medical"}
    table = run_cli("models").stdout
    assert "biomedclip" in table and "OPENAI" not in table  # values, not constant names
    shown = json.loads(run_cli("models", "show", "BiomedCLIP").stdout)
    assert shown["hub_id"] == "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    assert shown["preprocessing"]["image_size"] == 224


def test_models_check_without_weights_is_one_line():
    result = run_cli("models", "check", "plip")
    _assert_one_line_error(result, "vinid/plip")
    _assert_one_line_error(run_cli("models", "show", "nope"), "unknown encoder")
    _assert_one_line_error(run_cli("models", "--domain", "vet"), "--domain")


def test_models_check_loads_random_baseline():
    result = run_cli("models", "check", "random-vit")
    assert result.returncode == 0, result.stderr
    assert "512-d features" in result.stdout
