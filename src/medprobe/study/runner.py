"""``medprobe run``: a whole study, resumable, robust to a failing model or dataset.

The flow is one direction: datasets are opened, each dataset's text audit runs (if asked),
then every (model, dataset) unit is extracted and analysed (:func:`run_unit`), then the
cross-model analyses of each dataset run on the units' features, then the outcome is written.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from medprobe._version import __version__
from medprobe.analysis.embedding import Embedding2D
from medprobe.analysis.outcome import StudyOutcome, View, dataset_summary
from medprobe.analysis.registry import AnalysisEntry, analyses, listed_analyses
from medprobe.analysis.rows import Row, RowContext, RunInfo, results_frame
from medprobe.analysis.stats import stratified_subsample
from medprobe.analysis.suite import DatasetInput, UnitInput
from medprobe.audit import TextAudit, audit_text
from medprobe.audit.run import OCR
from medprobe.datasets import Dataset, open_source
from medprobe.encoders import computes_in, create_encoder
from medprobe.encoders.base import Encoder
from medprobe.errors import MedprobeError
from medprobe.features import FeatureSet, extract
from medprobe.features.layers import extract_layers
from medprobe.features.store import FeatureStore
from medprobe.fingerprint import fingerprint
from medprobe.overlay.spec import OverlaySpec
from medprobe.paths import default_cache_dir
from medprobe.progress import Stages, collected_warnings, console, progress_bar
from medprobe.report.outputs import write_results, write_views
from medprobe.report.thumbnails import captioned, overlay_examples, thumbnails
from medprobe.study.config import ModelEntry, StudyConfig, TextAuditConfig, layer_selection
from medprobe.study.provenance import encoder_provenance, write_run_json
from medprobe.study.units import Unit, UnitStore

UNIT_FORMAT = 1


@dataclass(frozen=True)
class Plan:
    """How every unit of a study runs: which analyses, with what, where features go."""

    analyses: tuple[str, ...] = listed_analyses()
    embeddings: tuple[str, ...] = ("pca",)
    seed: int = 0
    overlays: tuple[OverlaySpec, ...] = ()
    text_audit: TextAuditConfig | None = None
    store: FeatureStore | None = None
    batch_size: int = 32
    engine: str = "local"
    device: str = "cpu"
    precision: str = "fp32"
    n_thumbnails: int = 3000
    protocols: tuple[str, ...] = ("medprobe",)
    #: the study-level ``layers:`` (a model's own overrides it) and the block layers' storage
    layers: Any = None
    layer_dtype: str = "float16"
    #: whether any model reads layers (the ``layers`` analyses run)
    layered: bool = False
    run: RunInfo = field(default_factory=RunInfo.new)

    @classmethod
    def of(cls, config: StudyConfig) -> Plan:
        return cls(
            analyses=tuple(config.analyses),
            embeddings=tuple(config.embeddings),
            seed=config.seed,
            overlays=tuple(config.overlays),
            text_audit=config.text_audit,
            store=FeatureStore(config.cache or default_cache_dir()),
            batch_size=config.batch_size,
            engine=config.engine,
            device=config.device,
            precision=config.precision,
            n_thumbnails=config.thumbnails,
            protocols=config.linear_probe.protocols(),
            layers=layer_selection(config.layers),
            layer_dtype=config.layer_dtype,
            layered=config.layers is not None or any(m.layers for m in config.models),
        )

    def layers_of(self, model: ModelEntry) -> Any:
        """The layers a model is read at: its own ``layers:``, else the study's."""
        return layer_selection(model.layers) if model.layers is not None else self.layers

    def build(self, model: ModelEntry) -> Encoder:
        """The encoder of a study's model entry: its own device and precision, else the plan's
        (a study-level precision applies to the models that can compute in it)."""
        precision = model.precision or (
            self.precision if computes_in(model.name, self.precision) else "fp32"
        )
        return create_encoder(
            model.name,
            device=model.device or self.device,
            precision=precision,
            weights=model.weights,
            revision=model.revision,
            trust_remote_code=model.trust_remote_code,
            domain=model.domain,
        )

    def entries(self, scope: str) -> list[AnalysisEntry]:
        """The registered analyses this plan runs at ``scope`` ("unit" or "dataset")."""
        return [e for e in analyses() if e.scope == scope and self._runs(e)]

    def _runs(self, entry: AnalysisEntry) -> bool:
        return {
            "always": True,
            "listed": entry.name in self.analyses,
            "overlays": bool(self.overlays),
            "text_audit": self.text_audit is not None and self.text_audit.reliance,
            "layers": self.layered,
        }[entry.trigger]

    def unit_key(
        self, encoder: Encoder, dataset: Dataset, layers: Sequence[FeatureSet] = ()
    ) -> str:
        """Everything that changes a unit's results (a stored unit is reused only on a match);
        ``layers``: the layers' features (a unit without them keeps its key)."""
        read = [fs.meta["cache_key"] for fs in layers] if self.layered else []
        return fingerprint(
            *([read, self.layer_dtype] if self.layered else []),
            UNIT_FORMAT,
            __version__,
            encoder.identity(),
            dataset.fingerprint(),
            [dataset.name, dataset.modality, dataset.prompts, dataset.unit],
            {name: terms.describe() for name, terms in dataset.class_terms().items()},
            list(self.analyses),
            list(self.embeddings),
            self.seed,
            [o.describe() for o in self.overlays],
            self.text_audit.model_dump() if self.text_audit else None,
            list(self.protocols),
        )


def _one_line(exc: Exception) -> str:
    if isinstance(exc, MedprobeError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


def _view(fs: FeatureSet, embedding: Embedding2D, method: str) -> View:
    return View(
        encoder=fs.encoder,
        dataset=fs.dataset,
        method=method,
        coords=embedding.embedding_.round(4).tolist(),
        labels=[fs.class_names[i] for i in fs.labels[embedding.index_]],
        ids=[str(i) for i in fs.ids[embedding.index_]],
    )


def run_unit(
    encoder: Encoder,
    dataset: Dataset,
    plan: Plan,
    *,
    audit: TextAudit | None = None,
    saved: UnitStore | None = None,
    stages: Stages | None = None,
    show_progress: bool = False,
    layers: Any = None,
) -> Unit:
    """Extract (or reuse) the features of ``encoder`` on ``dataset`` and run the plan's
    analyses on them; a unit stored for the same key is reused instead of recomputed.
    ``stages`` times each step (and shows it on its progress display); ``layers`` (a
    ``layers:`` selection) adds the features of those layers, from one more pass."""
    stages = stages or Stages()
    pair = f"{encoder.name} on {dataset.name}"
    with stages.step("extraction"):
        tapped: dict[str, FeatureSet] = {}
        common: dict[str, Any] = {
            "cache": plan.store,
            "batch_size": plan.batch_size,
            "engine": plan.engine,
            "progress": stages.progress,
            "show_progress": show_progress,
        }
        if layers is None:
            fs = extract(encoder, dataset, **common)
        else:  # final and the blocks from one pass (final: the same store entry as above)
            tapped = extract_layers(
                encoder, dataset, layers, layer_dtype=plan.layer_dtype, **common
            )
            fs = tapped["final"]
    unit_input = UnitInput(
        features=fs,
        encoder=encoder,
        dataset=dataset,
        context=RowContext.of(encoder, dataset, plan.seed, fs),
        store=plan.store,
        batch_size=plan.batch_size,
        overlays=plan.overlays,
        text_audit=audit,
        protocols=plan.protocols,
        layers=tapped,
    )
    key = plan.unit_key(encoder, dataset, list(tapped.values()))
    unit = saved.load(encoder.name, dataset.name, key) if saved else None
    if unit is None:
        views = []
        for method in plan.embeddings:
            with stages.step("embeddings", f"{pair}: {method}"):
                views.append(_view(fs, Embedding2D(method, seed=plan.seed).fit(fs), method))
        rows: list[Row] = []
        for entry in plan.entries("unit"):
            if encoder.has_text or not entry.needs_text:
                with stages.step("analyses", f"{pair}: {entry.name}"):
                    rows += _contained(entry, unit_input)
        unit = Unit(
            key=key,
            encoder=encoder.name,
            dataset=dataset.name,
            domain=encoder.spec.domain,
            rows=rows,
            views=views,
            skipped=[
                {"encoder": encoder.name, "dataset": dataset.name, "id": s.id, "reason": s.reason}
                for s in fs.skipped
            ],
            predictions=unit_input.predictions,
        )
        if saved and not any(r.analysis == "error" for r in rows):
            saved.save(unit)  # a unit with a failed analysis is tried again on a rerun
    unit.input = unit_input
    return unit


def _contained(entry: AnalysisEntry, given: UnitInput | DatasetInput) -> list[Row]:
    """The entry's rows; a failure is one error row naming the analysis (the rest goes on)."""
    try:
        return entry.run(given)
    except Exception as exc:
        if not isinstance(exc, MedprobeError):
            console.print(traceback.format_exc(limit=3), markup=False, highlight=False)
        if isinstance(given, UnitInput):
            contexts = [given.context]
        else:  # a cross-model analysis: every model of the dataset gets the row
            contexts = [u.context for u in given.units]
        return [c.error(f"{entry.name} failed: {_one_line(exc)}") for c in contexts]


def _text_audits(
    datasets: dict[str, Dataset], plan: Plan, rows: list[Row], outcome: StudyOutcome
) -> dict[str, TextAudit]:
    """The text audit of every dataset (rows and report examples); a dataset whose audit fails
    becomes an error row and gets no reliance measurement."""
    config = plan.text_audit
    if config is None:
        return {}
    audits = {}
    for name, dataset in datasets.items():
        try:
            audit = audit_text(
                dataset,
                detector=config.build(),
                mask=config.mask,
                cache=plan.store,
                seed=plan.seed,
                permutations=config.permutations,
            )
        except MedprobeError as exc:
            rows.append(RowContext(OCR, name, plan.seed).error(f"text audit: {exc}"))
            continue
        rows += audit.dataset_rows(plan.seed)
        outcome.audit_examples[name] = captioned(audit.examples())
        audits[name] = audit
    return audits


def run_models(
    models: Sequence[ModelEntry | str],
    datasets: dict[str, Dataset],
    plan: Plan,
    *,
    title: str = "medprobe study",
    saved: UnitStore | None = None,
    show_progress: bool = True,
    rows: Sequence[Row] = (),
    failed_datasets: int = 0,
) -> tuple[StudyOutcome, list[dict[str, Any]]]:
    """Every model on every dataset. A model or dataset that fails becomes an error row and the
    run goes on; with ``saved``, finished (model, dataset) units are reused on a rerun."""
    rows = list(rows)
    outcome = StudyOutcome(title=title, results=results_frame([]))
    outcome.datasets = [dataset_summary(d) for d in datasets.values()]
    audits = _text_audits(datasets, plan, rows, outcome)
    provenance: list[dict[str, Any]] = []
    units: dict[str, list[Unit]] = {name: [] for name in datasets}
    entries = [ModelEntry(name=m) if isinstance(m, str) else m for m in models]
    with progress_bar(disable=not show_progress) as bar:
        stages = Stages(bar)
        overall = bar.add_task(
            "study: model x dataset pairs", total=len(entries) * len(datasets), unit="pair"
        )
        for model in entries:
            try:
                encoder = plan.build(model)
            except Exception as exc:
                message = _one_line(exc)
                rows += [RowContext(model.name, d, plan.seed).error(message) for d in datasets]
                console.print(f"[yellow]model {escape(model.name)} failed:[/] {escape(message)}")
                bar.advance(overall, len(datasets))
                continue
            outcome.encoders.append(
                {**encoder.spec.describe(), "weights": encoder.weights_source or "-"}
            )
            provenance.append(encoder_provenance(encoder))
            for name, dataset in datasets.items():
                try:
                    unit = run_unit(
                        encoder,
                        dataset,
                        plan,
                        audit=audits.get(name),
                        saved=saved,
                        stages=stages,
                        layers=plan.layers_of(model),
                    )
                except Exception as exc:
                    if not isinstance(exc, MedprobeError):
                        console.print(traceback.format_exc(limit=3), markup=False, highlight=False)
                    rows.append(RowContext.of(encoder, dataset, plan.seed).error(_one_line(exc)))
                else:
                    units[name].append(unit)
                    rows += unit.rows
                    outcome.views += unit.views
                    outcome.skipped += unit.skipped
                bar.advance(overall)
        for name, done in units.items():
            group = DatasetInput(name, [u.input for u in done if u.input is not None], plan.seed)
            for entry in plan.entries("dataset"):
                with stages.step("analyses", f"{name}: {entry.name} across models"):
                    rows += _contained(entry, group)
    for name, dataset in datasets.items():
        try:
            outcome.thumbnails[name] = thumbnails(
                dataset, _thumbnail_ids(outcome.views, name, plan)
            )
            if plan.overlays:
                outcome.overlay_examples[name] = overlay_examples(dataset, plan.overlays)
        except Exception as exc:  # report pictures only: never worth losing the results for
            console.print(f"report examples of {escape(name)} left out: {escape(_one_line(exc))}")
    outcome.results = results_frame(rows, plan.run)
    succeeded = sum(len(done) for done in units.values())
    total = len(entries) * (len(datasets) + failed_datasets)
    outcome.pairs = {"total": total, "succeeded": succeeded, "failed": total - succeeded}
    outcome.timings = dict(stages.seconds)
    return outcome, provenance


def _thumbnail_ids(views: list[View], dataset: str, plan: Plan) -> list[str]:
    """At most ``n_thumbnails`` of the images shown in the dataset's 2-D views, stratified by
    class (seeded), so every class has pictures on hover however the dataset is ordered."""
    labelled = dict(
        (i, label)
        for v in views
        if v.dataset == dataset
        for i, label in zip(v.ids, v.labels, strict=True)
    )
    ids, labels = list(labelled), np.array(list(labelled.values()))
    keep = stratified_subsample(labels, plan.n_thumbnails, plan.seed) if ids else []
    return [ids[k] for k in keep]


def _resolved(config: StudyConfig, value: Any) -> Any:
    """A source's value with its paths relative to the study file (``path`` of a mapping)."""
    if isinstance(value, str):
        return config.resolve(value)
    if isinstance(value, dict) and isinstance(value.get("path"), str):
        return {**value, "path": config.resolve(value["path"])}
    return value


def open_datasets(config: StudyConfig) -> tuple[dict[str, Dataset], list[Row]]:
    """Every dataset of the study file, and an error row per model for each one that fails."""
    datasets: dict[str, Dataset] = {}
    rows: list[Row] = []
    for entry in config.datasets:
        kind, value = entry.source()
        try:
            datasets[entry.name] = open_source(
                kind,
                _resolved(config, value),
                seed=config.seed,
                **entry.options(),
            )
        except MedprobeError as exc:
            rows += [
                RowContext(m.name, entry.name, config.seed).error(str(exc)) for m in config.models
            ]
            console.print(f"[yellow]dataset {escape(entry.name)} failed:[/] {escape(str(exc))}")
    return datasets, rows


def run_study(config: StudyConfig, out: Path, *, show_progress: bool = True) -> StudyOutcome:
    """Run (or resume) every model on every dataset of a study file; write results.csv,
    results.parquet, views.json and run.json under ``out`` (the report is written by the CLI)."""
    out.mkdir(parents=True, exist_ok=True)
    with collected_warnings() as caught:  # logged to run.json, not printed
        outcome, provenance = _run_study(config, out, show_progress)
    outcome.warnings = caught
    write_results(outcome.results, out)
    write_views(outcome, out)
    write_run_json(
        config.model_dump(mode="json"),
        config.seed,
        out,
        provenance,
        {"pairs": outcome.pairs, "timings_s": outcome.timings, "warnings": outcome.warnings},
    )
    return outcome


def _run_study(
    config: StudyConfig, out: Path, show_progress: bool
) -> tuple[StudyOutcome, list[dict[str, Any]]]:
    datasets, rows = open_datasets(config)
    return run_models(
        config.models,
        datasets,
        Plan.of(config),
        title=config.name,
        saved=UnitStore(out),
        show_progress=show_progress,
        rows=rows,
        failed_datasets=len(config.datasets) - len(datasets),
    )


def run_grid(
    encoders: Sequence[str],
    datasets: Sequence[Dataset],
    *,
    seed: int = 0,
    title: str = "medprobe study",
    show_progress: bool = True,
    embeddings: Sequence[str] = ("pca",),
) -> StudyOutcome:
    """Every encoder on every dataset, in memory (no feature cache, nothing written)."""
    plan = Plan(embeddings=tuple(embeddings), seed=seed)
    outcome, _ = run_models(
        encoders, {d.name: d for d in datasets}, plan, title=title, show_progress=show_progress
    )
    return outcome
