"""Run a grid of encoders x datasets through extraction, analyses, results table and report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from medprobe._version import __version__
from medprobe.analysis import Embedding2D, KNNProbe, LinearProbe, Separability
from medprobe.analysis.results import estimate_rows, results_frame, write_results
from medprobe.analysis.stats import Estimate
from medprobe.datasets.base import Dataset
from medprobe.encoders import EncoderSpec, create_encoder
from medprobe.features import FeatureSet, extract
from medprobe.progress import progress_bar


@dataclass(frozen=True)
class View:
    """One 2-D scatter: an encoder's feature distribution on a dataset."""

    encoder: str
    dataset: str
    method: str
    coords: list[list[float]]
    labels: list[str]
    ids: list[str]


@dataclass
class StudyOutcome:
    """Everything a report needs; also what the Python API returns."""

    title: str
    results: pd.DataFrame
    views: list[View] = field(default_factory=list)
    encoders: list[dict[str, str]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def analyse(fs: FeatureSet, spec: EncoderSpec, seed: int = 0) -> list[dict[str, Any]]:
    """The standard analyses of one FeatureSet as result rows."""
    context = {
        "encoder": spec.name,
        "domain": spec.domain,
        "dataset": fs.dataset,
        "modality": fs.meta.get("modality", ""),
        "seed": seed,
        "encoder_revision": spec.revision or "",
        "medprobe_version": __version__,
    }
    total = len(fs) + len(fs.skipped)
    counts = {"n_images": total, "n_used": len(fs), "n_skipped": len(fs.skipped)}
    rows = estimate_rows(context, "data", {k: Estimate.exact(v, total) for k, v in counts.items()})
    rows += estimate_rows(context, "separability", Separability(seed=seed).fit(fs).scores_)
    knn = KNNProbe(k=10, seed=seed).fit(fs)
    rows += estimate_rows(context, "knn", knn.scores_, params="k=10 metric=cosine")
    linear = LinearProbe(seed=seed).fit(fs)
    rows += estimate_rows(context, "linear_probe", linear.scores_, params=f"C={linear.C_:g}")
    return rows


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "modality": dataset.modality,
        "n": len(dataset),
        "classes": dataset.class_counts(),
        "fingerprint": dataset.fingerprint(),
    }


def run_grid(
    encoders: Sequence[str],
    datasets: Sequence[Dataset],
    *,
    seed: int = 0,
    title: str = "medprobe study",
    show_progress: bool = True,
) -> StudyOutcome:
    """Extract and analyse every encoder on every dataset."""
    rows: list[dict[str, Any]] = []
    outcome = StudyOutcome(title=title, results=results_frame([]))
    outcome.datasets = [dataset_summary(d) for d in datasets]
    with progress_bar(disable=not show_progress) as bar:
        analyses = bar.add_task("analyses", total=len(encoders) * len(datasets))
        for name in encoders:
            encoder = create_encoder(name)
            outcome.encoders.append(
                {**encoder.spec.describe(), "weights": encoder.weights_source or "-"}
            )
            for dataset in datasets:
                fs = extract(encoder, dataset, progress=bar)
                outcome.skipped += [
                    {
                        "encoder": encoder.name,
                        "dataset": dataset.name,
                        "id": s.id,
                        "reason": s.reason,
                    }
                    for s in fs.skipped
                ]
                rows += analyse(fs, encoder.spec, seed)
                outcome.views.append(_pca_view(fs, seed))
                bar.advance(analyses)
    outcome.results = results_frame(rows)
    return outcome


def _pca_view(fs: FeatureSet, seed: int) -> View:
    view = Embedding2D("pca", seed=seed).fit(fs)
    return View(
        encoder=fs.encoder,
        dataset=fs.dataset,
        method="pca",
        coords=view.embedding_.round(4).tolist(),
        labels=[fs.class_names[i] for i in fs.labels],
        ids=fs.ids.tolist(),
    )


def write_outputs(outcome: StudyOutcome, out: Path) -> dict[str, Path]:
    """results.csv, results.parquet and report.html under ``out``."""
    from medprobe.report.html import write_report  # plotly import is slow; only when writing

    out.mkdir(parents=True, exist_ok=True)
    write_results(outcome.results, out)
    report = write_report(outcome, out / "report.html")
    return {
        "results.csv": out / "results.csv",
        "results.parquet": out / "results.parquet",
        "report.html": report,
    }
