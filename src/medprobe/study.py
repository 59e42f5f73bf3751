"""Run a grid of encoders x datasets through extraction, analyses, results table and report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medprobe._version import __version__
from medprobe.analysis import (
    CrossModel,
    Embedding2D,
    FewShotProbe,
    Geometry,
    KNNProbe,
    LinearProbe,
    Separability,
    ZeroShot,
)
from medprobe.analysis.results import estimate_rows, results_frame, write_results
from medprobe.analysis.stats import Estimate
from medprobe.datasets.base import Dataset
from medprobe.encoders import create_encoder
from medprobe.encoders.base import Encoder
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


KNN_KS = (1, 5, 10, 20)
FEW_SHOTS = (1, 2, 4, 8, 16)


def analyse(fs: FeatureSet, encoder: Encoder, seed: int = 0) -> list[dict[str, Any]]:
    """The standard analyses of one FeatureSet as result rows."""
    spec = encoder.spec
    context = {
        "encoder": spec.name,
        "domain": spec.domain,
        "dataset": fs.dataset,
        "modality": fs.meta.get("modality", ""),
        "seed": seed,
        "encoder_revision": encoder.weights_source or spec.revision or "",
        "medprobe_version": __version__,
    }
    total = len(fs) + len(fs.skipped)
    counts = {"n_images": total, "n_used": len(fs), "n_skipped": len(fs.skipped)}
    rows = estimate_rows(context, "data", {k: Estimate.exact(v, total) for k, v in counts.items()})
    rows += estimate_rows(context, "separability", Separability(seed=seed).fit(fs).scores_)
    for k in KNN_KS:
        knn = KNNProbe(k=k, seed=seed).fit(fs)
        rows += estimate_rows(context, "knn", knn.scores_, params=f"k={k} metric=cosine")
    linear = LinearProbe(seed=seed).fit(fs)
    rows += estimate_rows(context, "linear_probe", linear.scores_, params=f"C={linear.C_:g}")
    train = fs.labels[fs.splits == "train"]
    smallest = int(np.bincount(train)[np.unique(train)].min()) if len(train) else 0
    shots = tuple(k for k in FEW_SHOTS if k <= smallest)
    if shots:
        few = FewShotProbe(shots=shots, seed=seed).fit(fs)
        for k in shots:
            rows += estimate_rows(context, "few_shot", few.scores_[k], params=f"shots={k} draws=10")
    text = None
    if encoder.has_text:
        zero = ZeroShot(encoder, seed=seed).fit(fs)
        text = zero.text_embeddings_
        rows += estimate_rows(context, "zero_shot", zero.scores_, params="prompt ensemble")
    rows += estimate_rows(context, "geometry", Geometry(seed=seed).fit(fs, text).scores_)
    return rows


def cross_model_rows(featuresets: list[FeatureSet], seed: int = 0) -> list[dict[str, Any]]:
    """Linear CKA (unbiased) and mutual-kNN alignment between every pair of models on a dataset.
    No CI is computed for these (NaN), rather than claiming none is needed."""
    if len(featuresets) < 2:
        return []
    cross = CrossModel().fit(featuresets)
    rows = []
    nan = float("nan")
    for i, fs in enumerate(featuresets):
        for j, other in enumerate(featuresets):
            if i == j:
                continue
            context = {
                "encoder": fs.encoder,
                "domain": fs.meta.get("encoder_spec", {}).get("domain", ""),
                "dataset": fs.dataset,
                "modality": fs.meta.get("modality", ""),
                "seed": seed,
                "encoder_revision": "",
                "medprobe_version": __version__,
            }
            scores = {
                "linear_cka_unbiased": Estimate(float(cross.cka_[i, j]), nan, nan, len(fs)),
                "mutual_knn_k10": Estimate(float(cross.mutual_knn_[i, j]), nan, nan, len(fs)),
            }
            rows += estimate_rows(context, "similarity", scores, params=f"vs={other.encoder}")
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
        by_dataset: dict[str, list[FeatureSet]] = {}
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
                rows += analyse(fs, encoder, seed)
                by_dataset.setdefault(dataset.name, []).append(fs)
                outcome.views.append(_pca_view(fs, seed))
                bar.advance(analyses)
    for featuresets in by_dataset.values():
        rows += cross_model_rows(featuresets, seed)
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
