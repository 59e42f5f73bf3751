"""The study as shipped (issue 23): names users type, preflight lines that are commands that
work, `medprobe init`, remote-code options, and `medprobe models` at 80 columns (issue 19)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys

import pytest

from medprobe.encoders import create_encoder, get_spec, list_specs
from medprobe.encoders import hub as hub_module
from medprobe.encoders.downloads import missing_downloads
from medprobe.errors import MedprobeError
from medprobe.study.config import copy_bundled, load_config
from medprobe.study.preflight import preflight


def _cli(*args: str, columns: int = 200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medprobe.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": str(columns)},
    )


# ------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("typed", "spec"),
    [
        ("openai/clip-vit-base-patch16", "clip-vit-b16"),
        ("facebook/dinov2-base", "dinov2-base"),
        ("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "biomedclip"),
        ("hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K", "laion-vit-b16"),
        ("UzairK/unimed-clip-vit-b16", "unimed-clip-b16"),
    ],
)
def test_hub_ids_and_hf_hub_names_resolve_to_their_spec(typed, spec):
    assert get_spec(typed).name == spec


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("biomedclp", "biomedclip"), ("dinov2", "dinov2-base"), ("clip-vit-b-16", "clip-vit-b16")],
)
def test_a_misspelt_name_suggests_the_closest_three(typo, meant):
    with pytest.raises(MedprobeError) as info:
        get_spec(typo)
    message = str(info.value)
    suggested = message.split("did you mean ")[1].split("?")[0].split(", ")
    assert meant in suggested and len(suggested) <= 3
    assert len(message) < 200  # not the whole zoo


def test_models_show_finds_a_spec_by_hub_id():
    result = _cli("models", "show", "openai/clip-vit-base-patch16")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["name"] == "clip-vit-b16" and shown["cached_weights"] is None
    assert shown["download"][0].startswith("`hf download openai/clip-vit-base-patch16 ")


def test_models_fits_80_columns_one_line_per_model():
    result = _cli("models", columns=80)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    names = [s.name for s in list_specs()]
    assert len(lines) == len(names) + 2  # header, one line per model, the closing hint
    for name, line in zip(names, lines[1:-1], strict=True):
        assert line.split()[0] == name
        spec = get_spec(name)
        assert line.split()[1:] == [
            spec.domain,
            spec.library,
            str(spec.embed_dim),
            f"{spec.preprocessing.image_size}px",
        ]


# --------------------------------------------------------------------------- preflight lines


def _hf_download_params(command: str) -> dict:
    """What the real `hf` command line makes of ``command`` (parsed, not run)."""
    from huggingface_hub.cli.hf import app

    argv = shlex.split(command)
    assert argv[:2] == ["hf", "download"], command
    context = app.make_context("hf", ["download"], resilient_parsing=True)
    download = app.get_command(context, "download").materialize()
    return download.make_context("download", argv[2:], parent=context).params


def _commands(lines: list[str]) -> list[str]:
    return [line.split("`")[-2] for line in lines if "`hf download" in line]


def _loader_fetches(spec, monkeypatch, tmp_path) -> list[tuple]:
    """Every (repo, revision, patterns, repo type) the loader asks the hub for."""
    calls = []

    def fake(repo_id, *, repo_type="model", revision=None, allow_patterns=(), **_):
        calls.append((repo_id, revision or "main", tuple(allow_patterns), repo_type))
        folder = tmp_path / repo_id.replace("/", "--")
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    monkeypatch.setattr(hub_module, "snapshot_download", fake)
    with contextlib.suppress(Exception):  # empty folders: the loader stops at its first read
        create_encoder(spec, trust_remote_code=True, revision=spec.revision or "0" * 40)
    return calls


@pytest.mark.parametrize("spec", [s for s in list_specs() if s.hub_id], ids=lambda s: s.name)
def test_every_download_line_is_one_working_command_for_what_the_loader_reads(
    spec, monkeypatch, tmp_path
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # other tests fill the cache
    lines = missing_downloads(spec)
    commands = _commands(lines)
    assert len(commands) == len(lines) == 1 + len(spec.options.get("extra_repos", ()))
    parsed = [_hf_download_params(c) for c in commands]
    wanted = {
        (p["repo_id"], p["revision"], p["include"], p["repo_type"] or "model") for p in parsed
    }
    revision = spec.revision or "0" * 40
    fetched = {
        (repo, rev if repo != spec.hub_id else spec.revision or "main", patterns, kind)
        for repo, rev, patterns, kind in _loader_fetches(spec, monkeypatch, tmp_path)
        if repo != spec.hub_id or rev == revision
    }
    assert fetched == wanted
    if spec.options.get("gated"):
        assert "request access at https://huggingface.co/" in lines[0]
        assert "`hf auth login`" in lines[0]


def test_bundled_paper_study_passes_its_preflight_with_only_download_lines(
    shared_data, monkeypatch, tmp_path
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    config = load_config("paper-2601.14774").model_copy(
        update={"base_dir": str(shared_data.parent)}
    )
    lines = preflight(config)
    assert lines
    for line in lines:
        assert "`hf download " in line or "not on the Hugging Face hub" in line, line
    # Extra repositories are named; one shared by two models is one command naming both.
    biomedbert = [line for line in lines if "BiomedBERT-base-uncased-abstract --" in line]
    assert len(biomedbert) == 1 and biomedbert[0].startswith("biomedclip, unimed-clip-b16")


# ------------------------------------------------------------- init and remote-code options


def test_init_copies_a_bundled_study_into_an_editable_file(tmp_path):
    result = _cli("init", "paper-2601.14774", str(tmp_path / "study"))
    assert result.returncode == 0, result.stderr
    copied = tmp_path / "study" / "paper-2601.14774.yaml"
    bundled = load_config("paper-2601.14774")
    again = load_config(copied)
    assert again.models == bundled.models and again.datasets == bundled.datasets
    assert _cli("init", "paper-2601.14774", str(tmp_path / "study")).returncode == 2
    with pytest.raises(MedprobeError, match="no bundled study"):
        copy_bundled("nope", tmp_path)


def test_remote_code_and_revision_are_cli_options(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text(
        "name: s\nmodels: [pixels, conceptclip]\n"
        "datasets: [{name: d, synthetic: {kind: dermoscopy, n: 20}}]\n"
    )
    config = load_config(study)
    assert "runs code from JerrryNie/ConceptCLIP" in " ".join(preflight(config))
    opened = config.with_model_options(
        trust_remote_code=["conceptclip"], revisions={"JerrryNie/ConceptCLIP": "a" * 40}
    )
    entry = opened.models[1]
    assert entry.trust_remote_code and entry.revision == "a" * 40
    assert not any("runs code" in line for line in preflight(opened))
    with pytest.raises(MedprobeError, match="not in study"):
        config.with_model_options(trust_remote_code=["biomedclip"], revisions={})
    result = _cli("run", str(study), "--out", str(tmp_path / "o"), "--revision", "conceptclip")
    assert result.returncode == 2 and "MODEL=VALUE" in result.stderr


# ------------------------------------------------------------------------------- provenance


def test_a_run_records_the_hub_commit_it_loaded_in_run_json_and_rows(tmp_path, hf_cache):
    import yaml
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from hub_layout import put_in_hf_cache
    from medprobe.analysis.rows import read_results
    from medprobe.study.runner import run_study

    spec = get_spec("tinyclip-8m")
    tiny = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    model = CLIPModel(
        CLIPConfig(
            text_config={**tiny, "num_attention_heads": 2, "vocab_size": 100},
            vision_config={**tiny, "num_attention_heads": 2, "patch_size": 32},
            projection_dim=spec.embed_dim,
        )
    )
    model.save_pretrained(tmp_path / "m")
    CLIPImageProcessor().save_pretrained(tmp_path / "m")
    put_in_hf_cache(hf_cache, spec.hub_id, tmp_path / "m", commit=spec.revision)
    study = {
        "name": "provenance",
        "device": "cpu",
        "models": ["tinyclip-8m"],
        "datasets": [{"name": "d", "synthetic": {"kind": "dermoscopy", "n": 20, "size": 64}}],
        "analyses": ["separability"],
        "cache": str(tmp_path / "cache"),
        "thumbnails": 0,
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    run_study(load_config(tmp_path / "s.yaml"), tmp_path / "out", show_progress=False)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    (entry,) = run["encoders"]
    assert entry["weights"] == f"{spec.hub_id}@{spec.revision}" and entry["digest"]
    rows = read_results(tmp_path / "out" / "results.csv")
    assert set(rows.encoder_revision) == {f"{spec.hub_id}@{spec.revision}"}
    # `medprobe models show` names the snapshot when the weights are there.
    shown = json.loads(_cli("models", "show", "tinyclip-8m").stdout)
    assert shown["cached_weights"] == f"{spec.hub_id}@{spec.revision}" and not shown["download"]
