"""``medprobe run``: a whole study, resumable, robust to a failing model or dataset."""

from __future__ import annotations

import json
import platform
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from medprobe._version import __version__
from medprobe.analysis.results import results_frame, write_results
from medprobe.atomic import atomic_write
from medprobe.datasets import image_folder, manifest, medmnist, synthetic
from medprobe.datasets.base import Dataset
from medprobe.encoders import create_encoder
from medprobe.errors import MedprobeError
from medprobe.features import extract
from medprobe.features.store import FeatureStore
from medprobe.fingerprint import fingerprint
from medprobe.overlay.spec import OverlaySpec
from medprobe.progress import console, progress_bar
from medprobe.study.config import (
    ANALYSES,
    DatasetEntry,
    ModelEntry,
    StudyConfig,
    TextAuditConfig,
)
from medprobe.study.grid import (
    StudyOutcome,
    View,
    analyse,
    cross_model_rows,
    dataset_summary,
    overlay_examples,
    thumbnails,
)

UNIT_FORMAT = 1


def build_dataset(config: StudyConfig, entry: DatasetEntry) -> Dataset:
    """The dataset an entry of the study file describes."""
    common = {"name": entry.name, "prompts": entry.prompts}
    if entry.path:
        return image_folder(
            config.resolve(entry.path),
            modality=entry.modality or "unknown",
            seed=config.seed,
            **common,
        )
    if entry.manifest:
        return manifest(
            config.resolve(entry.manifest),
            where=entry.where,
            modality=entry.modality,
            seed=config.seed,
            **common,
        )
    if entry.medmnist:
        return medmnist(
            config.resolve(entry.medmnist), mode=entry.mode, modality=entry.modality, **common
        )
    options = dict(entry.synthetic or {})
    return synthetic(
        options.pop("kind", "dermoscopy"),
        options.pop("n", 200),
        difficulty=options.pop("difficulty", "easy"),
        name=entry.name,
        **options,
    )


def _error_row(model: str, dataset: str, seed: int, message: str) -> dict[str, Any]:
    return {
        "encoder": model,
        "domain": "",
        "dataset": dataset,
        "modality": "",
        "analysis": "error",
        "metric": "error",
        "value": float("nan"),
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "n": 0,
        "seed": seed,
        "encoder_revision": "",
        "medprobe_version": __version__,
        "params": message,
    }


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


class _Units:
    """Finished (model, dataset) results on disk, so a rerun skips them."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "units"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, model: str, dataset: str) -> Path:
        return self.folder / f"{fingerprint(model, dataset)}.json"

    def load(self, model: str, dataset: str, key: str) -> dict[str, Any] | None:
        path = self.path(model, dataset)
        if not path.is_file():
            return None
        unit = json.loads(path.read_text())
        return unit if unit.get("key") == key else None

    def save(self, model: str, dataset: str, unit: dict[str, Any]) -> None:
        path = self.path(model, dataset)
        atomic_write(path, lambda h: h.write(json.dumps(unit, default=_json_default).encode()))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def run_study(config: StudyConfig, out: Path, *, show_progress: bool = True) -> StudyOutcome:
    """Run (or resume) every model on every dataset of a study file; write results.csv,
    results.parquet, views.json and run.json under ``out`` (the report is written by the CLI)."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    datasets: dict[str, Dataset] = {}
    for entry in config.datasets:
        try:
            datasets[entry.name] = build_dataset(config, entry)
        except MedprobeError as exc:
            rows += [_error_row(m.name, entry.name, config.seed, str(exc)) for m in config.models]
            console.print(f"[yellow]dataset {entry.name} failed:[/] {exc}")
    outcome, provenance = run_models(
        config.models,
        datasets,
        title=config.name,
        seed=config.seed,
        analyses=config.analyses,
        embeddings=config.embeddings,
        store=FeatureStore(config.cache or default_cache()),
        units=_Units(out),
        engine=config.engine,
        batch_size=config.batch_size,
        show_progress=show_progress,
        rows=rows,
        n_thumbnails=config.thumbnails,
        overlays=config.overlays,
        text_audit=config.text_audit,
    )
    write_results(outcome.results, out)
    write_views(outcome, out)
    _write_run_json(config, out, provenance)
    return outcome


def _overlay_rows(encoder, dataset, overlays, store, seed, batch_size) -> list[dict[str, Any]]:
    if not overlays:
        return []
    from medprobe.analysis.overlay_bias import overlay_bias, overlay_rows

    results = overlay_bias(
        encoder, dataset, list(overlays), cache=store, seed=seed, batch_size=batch_size
    )
    context = {
        "encoder": encoder.name,
        "domain": encoder.spec.domain,
        "dataset": dataset.name,
        "modality": dataset.modality,
        "seed": seed,
        "encoder_revision": encoder.weights_source or encoder.spec.revision or "",
        "medprobe_version": __version__,
    }
    return overlay_rows(results, context)


def _text_audits(datasets, config, store, seed, rows, outcome) -> dict[str, Any]:
    """The text audit of every dataset (rows and report examples); a dataset whose audit fails
    becomes an error row and gets no reliance measurement."""
    if config is None:
        return {}
    from medprobe.audit import TextDetector, audit_text
    from medprobe.audit.run import OCR

    audits = {}
    for name, dataset in datasets.items():
        try:
            audit = audit_text(
                dataset,
                detector=TextDetector(min_confidence=config.min_confidence),
                mask=config.mask,
                cache=store,
                seed=seed,
            )
        except MedprobeError as exc:
            rows.append(_error_row(OCR, name, seed, f"text audit: {exc}"))
            continue
        rows += audit.dataset_rows(seed)
        outcome.audit_examples[name] = audit.examples()
        audits[name] = audit
    return audits


def _reliance_rows(encoder, audit, config, store, seed, batch_size) -> list[dict[str, Any]]:
    if audit is None or not config.reliance:
        return []
    audit.measure(encoder, cache=store, seed=seed, batch_size=batch_size)
    return audit.reliance_rows(encoder.name, seed)


def default_cache() -> Path:
    """The feature store: ``$MEDPROBE_CACHE`` or ``~/.cache/medprobe``."""
    import os

    return Path(os.environ.get("MEDPROBE_CACHE", "~/.cache/medprobe")).expanduser()


def run_models(
    models: Sequence[ModelEntry | str],
    datasets: dict[str, Dataset],
    *,
    title: str = "medprobe study",
    seed: int = 0,
    analyses: Sequence[str] = ANALYSES,
    embeddings: Sequence[str] = ("pca",),
    store: FeatureStore | None = None,
    units: _Units | None = None,
    engine: str = "local",
    batch_size: int = 32,
    show_progress: bool = True,
    rows: list[dict[str, Any]] | None = None,
    n_thumbnails: int = 3000,
    overlays: Sequence[OverlaySpec] = (),
    text_audit: TextAuditConfig | None = None,
) -> tuple[StudyOutcome, list[dict[str, Any]]]:
    """Every model on every dataset. A model or dataset that fails becomes an error row and the
    run goes on; with ``units``, finished (model, dataset) pairs are skipped on a rerun."""
    from medprobe.analysis import Embedding2D

    rows = list(rows or [])
    outcome = StudyOutcome(title=title, results=results_frame([]))
    outcome.datasets = [dataset_summary(d) for d in datasets.values()]
    featuresets: dict[str, list] = {name: [] for name in datasets}
    provenance: list[dict[str, Any]] = []
    entries = [ModelEntry(name=m) if isinstance(m, str) else m for m in models]
    audits = _text_audits(datasets, text_audit, store, seed, rows, outcome)
    with progress_bar(disable=not show_progress) as bar:
        overall = bar.add_task("study", total=len(entries) * len(datasets))
        for model in entries:
            try:
                encoder = create_encoder(
                    model.name,
                    weights=model.weights,
                    revision=model.revision,
                    trust_remote_code=model.trust_remote_code,
                    domain=model.domain,
                )
            except Exception as exc:
                message = str(exc) if isinstance(exc, MedprobeError) else _one_line(exc)
                rows += [_error_row(model.name, d, seed, message) for d in datasets]
                console.print(f"[yellow]model {model.name} failed:[/] {message}")
                bar.advance(overall, len(datasets))
                continue
            outcome.encoders.append(
                {**encoder.spec.describe(), "weights": encoder.weights_source or "-"}
            )
            provenance.append(
                {
                    "encoder": encoder.name,
                    "identity": encoder.identity(),
                    "weights": encoder.weights_source,
                    "digest": encoder.weights_digest,
                    "spec": encoder.spec.model_dump(mode="json"),
                }
            )
            for name, dataset in datasets.items():
                key = fingerprint(
                    UNIT_FORMAT,
                    __version__,
                    encoder.identity(),
                    dataset.fingerprint(),
                    list(analyses),
                    list(embeddings),
                    seed,
                    [o.describe() for o in overlays],
                    text_audit.model_dump() if text_audit else None,
                )
                try:
                    fs = extract(
                        encoder,
                        dataset,
                        cache=store,
                        batch_size=batch_size,
                        engine=engine,
                        progress=bar,
                    )
                    featuresets[name].append(fs)
                    unit = units.load(encoder.name, name, key) if units else None
                    if unit is None:
                        views = [
                            _view(fs, Embedding2D(m, seed=seed).fit(fs), m) for m in embeddings
                        ]
                        predictions: dict[str, Any] = {}
                        unit = {
                            "key": key,
                            "rows": analyse(fs, encoder, seed, analyses, predictions)
                            + _overlay_rows(encoder, dataset, overlays, store, seed, batch_size)
                            + _reliance_rows(
                                encoder, audits.get(name), text_audit, store, seed, batch_size
                            ),
                            "predictions": predictions,
                            "encoder": encoder.name,
                            "dataset": name,
                            "domain": encoder.spec.domain,
                            "views": [asdict(v) for v in views],
                            "skipped": [
                                {
                                    "encoder": encoder.name,
                                    "dataset": name,
                                    "id": s.id,
                                    "reason": s.reason,
                                }
                                for s in fs.skipped
                            ],
                        }
                        if units:
                            units.save(encoder.name, name, unit)
                    rows += unit["rows"]
                    outcome.views += [View(**v) for v in unit["views"]]
                    outcome.skipped += unit["skipped"]
                except Exception as exc:
                    message = str(exc) if isinstance(exc, MedprobeError) else _one_line(exc)
                    if not isinstance(exc, MedprobeError):
                        console.print(traceback.format_exc(limit=3), markup=False)
                    rows.append(_error_row(encoder.name, name, seed, message))
                bar.advance(overall)
    if "similarity" in analyses:
        for fsets in featuresets.values():
            rows += cross_model_rows(fsets, seed)
    for name, dataset in datasets.items():
        ids = list(dict.fromkeys(i for v in outcome.views if v.dataset == name for i in v.ids))
        outcome.thumbnails[name] = thumbnails(dataset, ids[:n_thumbnails])
        if overlays:
            outcome.overlay_examples[name] = overlay_examples(dataset, overlays)
    outcome.results = results_frame(rows)
    return outcome, provenance


def _view(fs, embedding, method: str) -> View:
    return View(
        encoder=fs.encoder,
        dataset=fs.dataset,
        method=method,
        coords=embedding.embedding_.round(4).tolist(),
        labels=[fs.class_names[i] for i in fs.labels[embedding.index_]],
        ids=[str(i) for i in fs.ids[embedding.index_]],
    )


def write_views(outcome: StudyOutcome, out: Path) -> None:
    """``out/views.json``: what the report needs besides the results table."""
    data = {
        "title": outcome.title,
        "views": [asdict(v) for v in outcome.views],
        "encoders": outcome.encoders,
        "datasets": outcome.datasets,
        "skipped": outcome.skipped,
        "thumbnails": outcome.thumbnails,
        "overlay_examples": outcome.overlay_examples,
        "audit_examples": outcome.audit_examples,
    }
    atomic_write(
        out / "views.json", lambda h: h.write(json.dumps(data, default=_json_default).encode())
    )


def load_outcome(out: Path) -> StudyOutcome:
    """A finished study's outcome, from ``results.parquet`` and ``views.json``."""
    import pandas as pd

    if not (out / "results.parquet").is_file() or not (out / "views.json").is_file():
        raise MedprobeError(f"{out} has no finished study (results.parquet and views.json)")
    data = json.loads((out / "views.json").read_text())
    return StudyOutcome(
        title=data["title"],
        results=pd.read_parquet(out / "results.parquet"),
        views=[View(**v) for v in data["views"]],
        encoders=data["encoders"],
        datasets=data["datasets"],
        skipped=data["skipped"],
        thumbnails=data["thumbnails"],
        overlay_examples=data["overlay_examples"],
        audit_examples=data.get("audit_examples", {}),
    )


def _write_run_json(config: StudyConfig, out: Path, provenance: list[dict[str, Any]]) -> None:
    import importlib.metadata as md

    import torch

    versions = {}
    for package in (
        "medprobe",
        "torch",
        "torchvision",
        "timm",
        "open_clip_torch",
        "transformers",
        "huggingface_hub",
        "scikit-learn",
        "numpy",
        "faiss-cpu",
        "openTSNE",
        "umap-learn",
        "pydicom",
        "pillow",
    ):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    record = {
        "config": config.model_dump(mode="json"),
        "versions": versions,
        "encoders": provenance,
        "seed": config.seed,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cuda": torch.cuda.is_available(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    atomic_write(
        out / "run.json", lambda h: h.write(json.dumps(record, indent=1, default=str).encode())
    )
