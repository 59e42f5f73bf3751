"""Exports of a finished study, read back as their viewers read them: TensorBoard's embedding
projector (our own reader, then TensorBoard's projector plugin), FiftyOne's dataset layout, and
MLflow logging (read back with MlflowClient)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from medprobe.analysis.rows import read_results
from medprobe.cli import main
from medprobe.datasets.base import Record
from medprobe.features.store import FeatureStore
from medprobe.study.export import embedding_field, subsample

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
CLASSES = ("benign", "malignant", "normal")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished two-model, two-dataset study: the synthetic testbed (images in memory) and
    an image manifest with a patient column (PNG, JPEG and TIFF files of several shapes)."""
    tmp = tmp_path_factory.mktemp("export")
    rows = []
    for i in range(36):
        suffix = (".png", ".jpg", ".tif")[i % 3]
        path = tmp / "images" / f"case {i}{suffix}"
        path.parent.mkdir(exist_ok=True)
        label = CLASSES[i % 3]
        shade = (60 + 60 * (i % 3), 90 + i, 140 - i)
        Image.new("RGB", (48 + 8 * (i % 4), 32 + 4 * (i % 5)), shade).save(path)
        rows.append({"path": f"images/{path.name}", "label": label, "patient": f"p{i // 2}"})
    pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    config = {
        "name": "export study",
        "seed": 3,
        "models": ["pixels", "handcrafted"],
        "datasets": [
            {"name": "synthetic", "synthetic": {"kind": "dermoscopy", "n": 40, "size": 64}},
            {"name": "cases", "manifest": "manifest.csv", "group_column": "patient"},
        ],
        "analyses": ["knn"],
        "cache": str(tmp / "cache"),
        "thumbnails": 10,
    }
    if HAS_MLFLOW:
        config["mlflow"] = {
            "experiment": "medprobe-export-test",
            "artifact_location": (tmp / "mlartifacts").as_uri(),
        }
    (tmp / "study.yaml").write_text(yaml.safe_dump(config))
    out = tmp / "run"
    mlflow = ["--mlflow", uri] if HAS_MLFLOW else []
    assert main(["run", str(tmp / "study.yaml"), "--out", str(out), *mlflow]) == 0
    return {"tmp": tmp, "out": out, "manifest": pd.DataFrame(rows), "mlflow_uri": uri}


def _features(study, dataset: str, encoder: str) -> dict[str, np.ndarray]:
    """A model's stored features of a dataset, by image id (what the export must carry)."""
    results = read_results(study["out"] / "results.parquet")
    row = results[(results.dataset == dataset) & (results.encoder == encoder)].iloc[0]
    features, ids, _ = FeatureStore(study["tmp"] / "cache").entry(row.feature_key).load()
    return {str(i): np.asarray(f) for i, f in zip(ids, features, strict=True)}


def parse_pbtxt(text: str) -> dict:
    """Protobuf text format, as our exporter writes it (one field or brace per line)."""
    stack: list[dict] = [{}]
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            child: dict = {}
            stack[-1].setdefault(line[:-1].strip(), []).append(child)
            stack.append(child)
        elif line == "}":
            stack.pop()
        else:
            key, value = (part.strip() for part in line.split(":", 1))
            stack[-1].setdefault(key, []).append(
                json.loads(value) if value.startswith('"') else int(value)
            )
    assert len(stack) == 1, "unbalanced braces"
    return stack[0]


@pytest.fixture(scope="module")
def projector(study):
    target = study["tmp"] / "projector"
    assert main(["export", str(study["out"]), str(target), "--to", "projector"]) == 0
    small = study["tmp"] / "projector-small"
    assert (
        main(["export", str(study["out"]), str(small), "--to", "projector", "--max-points", "20"])
        == 0
    )
    return target, small


def test_projector_files_read_back(study, projector):
    target, _ = projector
    config = parse_pbtxt((target / "projector_config.pbtxt").read_text())
    embeddings = config["embeddings"]
    assert sorted(e["tensor_name"][0] for e in embeddings) == sorted(
        f"{m} on {d}" for m in ("pixels", "handcrafted") for d in ("synthetic", "cases")
    )
    manifest = study["manifest"].assign(id=lambda f: f.path)
    for embedding in embeddings:
        encoder, dataset = embedding["tensor_name"][0].split(" on ")
        tensors = np.loadtxt(target / embedding["tensor_path"][0], delimiter="\t", ndmin=2)
        metadata = pd.read_csv(
            target / embedding["metadata_path"][0], sep="\t", dtype=str, keep_default_na=False
        )
        n = 40 if dataset == "synthetic" else 36  # under 5,000: every image
        assert tensors.shape == tuple(embedding["tensor_shape"]) and len(tensors) == n
        assert len(metadata) == n
        expected = ["id", "class", "split"] + (["patient"] if dataset == "cases" else [])
        assert list(metadata.columns) == expected
        assert set(metadata.split) <= {"train", "val", "test"}
        # each row is the stored feature vector of the image its metadata row names
        stored = _features(study, dataset, encoder)
        np.testing.assert_allclose(
            tensors, np.stack([stored[i] for i in metadata.id]), rtol=1e-6, atol=1e-6
        )
        if dataset == "cases":
            truth = manifest.set_index("id").loc[metadata.id]
            assert list(metadata["class"]) == list(truth.label)
            assert list(metadata.patient) == list(truth.patient)
        sprite = embedding["sprite"][0]
        image = Image.open(target / sprite["image_path"][0])
        width, height = sprite["single_image_dim"]
        grid = math.ceil(math.sqrt(n))
        assert image.size == (grid * width, grid * height) and width == height == 64
        # the first cell holds the first point's thumbnail (not the empty background)
        assert np.asarray(image.crop((0, 0, width, height))).std() > 0 or n == 0


def test_projector_subsample_is_bounded_stratified_and_shared(study, projector):
    _, small = projector
    config = parse_pbtxt((small / "projector_config.pbtxt").read_text())
    by_dataset: dict[str, set[tuple[str, ...]]] = {}
    for embedding in config["embeddings"]:
        dataset = embedding["tensor_name"][0].split(" on ")[1]
        metadata = pd.read_csv(small / embedding["metadata_path"][0], sep="\t", dtype=str)
        assert 0 < len(metadata) <= 20 and embedding["tensor_shape"][0] == len(metadata)
        counts = Counter(metadata["class"])  # proportional: 20 of 20 + 20, 20 of 12 + 12 + 12
        assert len(counts) == (2 if dataset == "synthetic" else 3)
        assert max(counts.values()) - min(counts.values()) <= 1
        by_dataset.setdefault(dataset, set()).add(tuple(metadata.id))
        image = Image.open(small / embedding["sprite"][0]["image_path"][0])
        assert image.width == math.ceil(math.sqrt(len(metadata))) * 64
    assert all(len(ids) == 1 for ids in by_dataset.values()), "models must share the points"
    assert "a subsample stratified by class (seed 3)" in (small / "README.txt").read_text()
    assert "of 40 images" in (small / "projector_config.pbtxt").read_text()


def test_projector_loads_in_tensorboards_plugin(projector):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (optional)")
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector import projector_plugin
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    target, _ = projector
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(target))
    multiplexer.Reload()
    plugin = projector_plugin.ProjectorPlugin(
        base_plugin.TBContext(
            logdir=str(target),
            data_provider=data_provider.MultiplexerDataProvider(multiplexer, str(target)),
        )
    )
    apps = plugin.get_plugin_apps()

    def get(route: str, **query: str) -> Response:
        response = Client(apps[route], Response).get(route, query_string=query)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response

    assert get("/runs").json == ["."]
    config = get("/info", run=".").json
    assert len(config["embeddings"]) == 4
    for embedding in config["embeddings"]:
        name = embedding["tensorName"]
        n, d = map(int, embedding["tensorShape"])
        tensor = np.frombuffer(get("/tensor", run=".", name=name).data, dtype=np.float32)
        expected = np.loadtxt(target / embedding["tensorPath"], delimiter="\t", ndmin=2)
        np.testing.assert_allclose(tensor.reshape(n, d), expected, rtol=1e-6)
        lines = get("/metadata", run=".", name=name).get_data(as_text=True).splitlines()
        assert len(lines) == n + 1 and lines[0].startswith("id\tclass\tsplit")
        sprite = get("/sprite_image", run=".", name=name)
        assert sprite.mimetype == "image/png"
        assert sprite.data == (target / embedding["sprite"]["imagePath"]).read_bytes()


def test_subsample_is_at_most_the_limit_and_independent_of_order():
    records = [Record(f"r{i}", i % 3, "train", i) for i in range(30)]
    chosen = subsample(records, 20, seed=1)  # 3 classes x round(6.67) = 21 before the trim
    assert len(chosen) == 20
    assert sorted(Counter(r.label for r in chosen).values()) == [6, 7, 7]
    shuffled = random.Random(0).sample(records, len(records))
    assert {r.id for r in subsample(shuffled, 20, seed=1)} == {r.id for r in chosen}
    assert {r.id for r in subsample(records, 20, seed=2)} != {r.id for r in chosen}
    assert subsample(records, None, seed=1) == records


@pytest.fixture(scope="module")
def fiftyone_export(study):
    target = study["tmp"] / "fiftyone"
    assert main(["export", str(study["out"]), str(target), "--to", "fiftyone"]) == 0
    return target


def test_fiftyone_export_has_the_documented_layout(study, fiftyone_export):
    """FiftyOne's ``FiftyOneDataset`` importer reads a folder with ``metadata.json`` (no
    ``version``: the JSON-samples layout, field types as ``str(field)``) and ``samples.json``
    (``{"samples": [...]}``, relative file paths against the folder)."""
    for dataset, n in (("synthetic", 40), ("cases", 36)):
        folder = fiftyone_export / dataset
        metadata = json.loads((folder / "metadata.json").read_text())
        assert "version" not in metadata and metadata["media_type"] == "image"
        fields = metadata["sample_fields"]
        assert fields["ground_truth"] == (
            "fiftyone.core.fields.EmbeddedDocumentField(fiftyone.core.labels.Classification)"
        )
        assert metadata["info"]["classes"] == (
            ["benign", "malignant"] if dataset == "synthetic" else list(CLASSES)
        )
        samples = json.loads((folder / "samples.json").read_text())["samples"]
        assert len(samples) == n
        for encoder in ("pixels", "handcrafted"):
            field = embedding_field(encoder)
            assert fields[field] == "fiftyone.core.fields.VectorField"
            stored = _features(study, dataset, encoder)
            vectors = np.array([s[field] for s in samples])
            np.testing.assert_allclose(
                vectors, np.stack([stored[s["image_id"]] for s in samples]), rtol=1e-6, atol=1e-6
            )
        for sample in samples:
            assert sample["tags"] in (["train"], ["val"], ["test"])
            assert sample["ground_truth"]["_cls"] == "Classification"
            assert sample["ground_truth"]["label"] in metadata["info"]["classes"]
            path = Path(sample["filepath"])
            assert (path if path.is_absolute() else folder / path).is_file()
        if dataset == "cases":  # browser formats stay where they are; TIFF is written as PNG
            truth = study["manifest"].set_index("path")
            for sample in samples:
                assert sample["patient"] == truth.loc[sample["image_id"], "patient"]
                assert sample["ground_truth"]["label"] == truth.loc[sample["image_id"], "label"]
                if sample["image_id"].endswith(".tif"):
                    assert sample["filepath"].startswith("data/")
                    assert sample["filepath"].endswith(".png")
                else:
                    expected = (study["tmp"] / sample["image_id"]).resolve()
                    assert sample["filepath"] == str(expected)
        else:  # images in memory are written out
            assert all(s["filepath"].startswith("data/") for s in samples)


FIFTYONE_PYTHON = os.environ.get("MEDPROBE_FIFTYONE_PYTHON")
LOAD = """
import json, sys
import fiftyone as fo
dataset = fo.Dataset.from_dir(sys.argv[1], dataset_type=fo.types.FiftyOneDataset)
schema = dataset.get_field_schema()
sample = dataset.first()
print(json.dumps({
    "n": len(dataset),
    "types": {k: type(v).__name__ for k, v in schema.items()},
    "classes": dataset.default_classes,
    "labels": dataset.count_values("ground_truth.label"),
    "tags": dataset.count_sample_tags(),
    "first": {"image_id": sample.image_id, "emb_pixels": sample.emb_pixels.tolist()},
}))
"""


@pytest.mark.skipif(
    FIFTYONE_PYTHON is None,
    reason="set MEDPROBE_FIFTYONE_PYTHON to a Python with fiftyone (and its MongoDB) to load "
    "the export with FiftyOne's own importer",
)
def test_fiftyone_loads_the_export(study, fiftyone_export):
    folder = fiftyone_export / "cases"
    loaded = json.loads(
        subprocess.run(
            [FIFTYONE_PYTHON, "-c", LOAD, str(folder)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.splitlines()[-1]
    )
    samples = json.loads((folder / "samples.json").read_text())["samples"]
    assert loaded["n"] == len(samples) == 36
    assert loaded["types"]["emb_pixels"] == "VectorField"
    assert loaded["types"]["ground_truth"] == "EmbeddedDocumentField"
    assert loaded["classes"] == list(CLASSES)
    assert loaded["labels"] == dict(Counter(s["ground_truth"]["label"] for s in samples))
    assert loaded["tags"] == dict(Counter(s["tags"][0] for s in samples))
    first = next(s for s in samples if s["image_id"] == loaded["first"]["image_id"])
    np.testing.assert_allclose(loaded["first"]["emb_pixels"], first["emb_pixels"])


NO_MLFLOW = 'mlflow is not installed (pip install "medprobe[mlflow]")'


@pytest.mark.skipif(not HAS_MLFLOW, reason=NO_MLFLOW)
def test_mlflow_run_has_params_metrics_and_artifacts(study, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(study["mlflow_uri"])
    experiment = client.get_experiment_by_name("medprobe-export-test")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "export study" and logged.info.status == "FINISHED"
    params = logged.data.params
    assert params["name"] == "export study" and params["seed"] == "3"
    assert params["models.0.name"] == "pixels" and params["models.1.name"] == "handcrafted"
    assert params["datasets.1.group_column"] == "patient" and params["analyses"] == "knn"
    results = read_results(study["out"] / "results.parquet")
    assert logged.data.tags["medprobe.run_id"] == results.run_id.iloc[0]
    knn = results[(results.metric == "balanced_accuracy") & (results.param_k == 10)]
    assert len(knn) == 4
    for r in knn.itertuples():
        key = f"knn_balanced_accuracy_k10/{r.dataset}/{r.encoder}"
        assert logged.data.metrics[key] == pytest.approx(r.value)
        assert logged.data.metrics[f"{key}/ci_low"] == pytest.approx(r.ci_low)
        assert logged.data.metrics[f"{key}/ci_high"] == pytest.approx(r.ci_high)
    assert logged.data.metrics["pairs/succeeded"] == 4
    names = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"results.csv", "report.html", "run.json"} <= names
    copy = client.download_artifacts(logged.info.run_id, "results.csv", str(tmp_path))
    assert Path(copy).read_bytes() == (study["out"] / "results.csv").read_bytes()


def test_export_errors_are_one_line(study, tmp_path, capsys):
    assert main(["export", str(tmp_path), str(tmp_path / "x"), "--to", "projector"]) == 2
    assert "is not a finished study run folder" in capsys.readouterr().err
    assert main(["export", str(study["out"]), str(tmp_path / "x"), "--to", "tensorflow"]) == 2
    assert "--to must be one of projector, fiftyone" in capsys.readouterr().err
    zero = ["--to", "projector", "--max-points", "0"]
    assert main(["export", str(study["out"]), str(tmp_path / "x"), *zero]) == 2
    assert "--max-points must be a positive number" in capsys.readouterr().err


def test_export_names_a_missing_feature_store(study, tmp_path, capsys):
    moved = tmp_path / "run"
    moved.mkdir()
    (moved / "results.parquet").write_bytes((study["out"] / "results.parquet").read_bytes())
    recorded = json.loads((study["out"] / "run.json").read_text())
    recorded["config"]["cache"] = str(tmp_path / "gone")
    (moved / "run.json").write_text(json.dumps(recorded))
    assert main(["export", str(moved), str(tmp_path / "x"), "--to", "fiftyone"]) == 2
    assert f"feature store {tmp_path / 'gone'} does not exist" in capsys.readouterr().err


def test_export_finds_moved_data_and_refuses_changed_data(study, tmp_path, capsys):
    moved = tmp_path / "data"
    shutil.copytree(study["tmp"] / "images", moved / "images")  # copy2 keeps the mtimes
    shutil.copy2(study["tmp"] / "manifest.csv", moved / "manifest.csv")
    target = tmp_path / "projector"
    args = ["export", str(study["out"]), str(target), "--to", "projector", "--data-root"]
    assert main([*args, str(moved)]) == 0
    assert (target / "cases" / "sprite.png").is_file()
    Image.new("RGB", (20, 20), (0, 0, 0)).save(moved / "images" / "case 0.png")
    assert main([*args, str(moved)]) == 2
    assert "dataset 'cases' changed since the study ran" in capsys.readouterr().err
