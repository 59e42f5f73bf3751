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
    FewShotProbe,
    Geometry,
    KNNProbe,
    LinearProbe,
    Separability,
    ZeroShot,
)
from medprobe.analysis.results import estimate_rows, write_results
from medprobe.analysis.stats import Estimate
from medprobe.datasets.base import Dataset
from medprobe.encoders.base import Encoder
from medprobe.features import FeatureSet


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
    #: dataset -> image id -> small JPEG data URI, shown when hovering a point in the report.
    thumbnails: dict[str, dict[str, str]] = field(default_factory=dict)
    #: dataset -> overlay label -> example overlaid images (data URIs) for the report.
    overlay_examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: dataset -> images with their detected burned-in words boxed (uri, caption).
    audit_examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)


KNN_KS = (1, 5, 10, 20)
FEW_SHOTS = (1, 2, 4, 8, 16)


ALL_ANALYSES = ("separability", "knn", "linear_probe", "few_shot", "zero_shot", "geometry")


def analyse(
    fs: FeatureSet,
    encoder: Encoder,
    seed: int = 0,
    analyses: Sequence[str] = ALL_ANALYSES,
    predictions: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The chosen analyses of one FeatureSet as result rows (zero-shot only for VLMs).

    ``predictions``, when given, receives the linear probe's per-image test predictions (for
    paired model comparisons on the same images).
    """
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
    if "separability" in analyses:
        rows += estimate_rows(context, "separability", Separability(seed=seed).fit(fs).scores_)
    for k in KNN_KS if "knn" in analyses else ():
        knn = KNNProbe(k=k, seed=seed).fit(fs)
        rows += estimate_rows(context, "knn", knn.scores_, params=f"k={k} metric=cosine")
    if "linear_probe" in analyses:
        linear = LinearProbe(seed=seed).fit(fs)
        rows += estimate_rows(context, "linear_probe", linear.scores_, params=f"C={linear.C_:g}")
        if predictions is not None:
            predictions.update(
                ids=fs.ids[fs.splits == "test"].tolist(),
                y_true=linear.y_true_.tolist(),
                y_pred=linear.y_pred_.tolist(),
                n_classes=len(fs.class_names),
            )
    train = fs.labels[fs.splits == "train"]
    smallest = int(np.bincount(train)[np.unique(train)].min()) if len(train) else 0
    shots = tuple(k for k in FEW_SHOTS if k <= smallest)
    if shots and "few_shot" in analyses:
        few = FewShotProbe(shots=shots, seed=seed).fit(fs)
        for k in shots:
            rows += estimate_rows(context, "few_shot", few.scores_[k], params=f"shots={k} draws=10")
    text = None
    if encoder.has_text and "zero_shot" in analyses:
        zero = ZeroShot(encoder, seed=seed).fit(fs)
        text = zero.text_embeddings_
        rows += estimate_rows(context, "zero_shot", zero.scores_, params="prompt ensemble")
    if "geometry" in analyses:
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
    embeddings: Sequence[str] = ("pca",),
) -> StudyOutcome:
    """Every encoder on every dataset, in memory (no feature cache, nothing written)."""
    from medprobe.study.runner import run_models

    outcome, _ = run_models(
        encoders,
        {d.name: d for d in datasets},
        title=title,
        seed=seed,
        embeddings=embeddings,
        show_progress=show_progress,
    )
    return outcome


def data_uri(image, size: int) -> str:
    import base64
    import io

    image = image.copy()
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def overlay_examples(dataset: Dataset, overlays: Sequence, count: int = 4) -> dict[str, list[str]]:
    """A few images of ``dataset`` with each overlay drawn, as data URIs (one per class first)."""
    from medprobe.errors import BadImageError
    from medprobe.overlay import TextOverlay

    picks, seen = [], set()
    for index, record in enumerate(dataset.records):
        if record.label not in seen or len(seen) == len(dataset.class_names):
            seen.add(record.label)
            picks.append(index)
        if len(picks) == count:
            break
    out = {}
    for spec in overlays:
        overlay = TextOverlay(spec, dataset.class_names)
        uris = []
        for index in picks:
            try:
                image = dataset.load_image(dataset.records[index])
            except BadImageError:
                continue
            uris.append(data_uri(overlay(image, dataset.records[index], index), 160))
        out[spec.label] = uris
    return out


def thumbnails(dataset: Dataset, ids: Sequence[str], size: int = 64) -> dict[str, str]:
    """Small JPEG data URIs of the images ``ids`` (unreadable ones are left out)."""
    from medprobe.errors import BadImageError

    wanted = set(ids)
    out = {}
    for record in dataset.records:
        if record.id not in wanted:
            continue
        try:
            image = dataset.load_image(record)
        except BadImageError:
            continue
        out[record.id] = data_uri(image, size)
    return out


def write_outputs(outcome: StudyOutcome, out: Path) -> dict[str, Path]:
    """results.csv, results.parquet, report.html and figures/ under ``out``."""
    from medprobe.report.html import write_report  # plotly import is slow; only when writing

    out.mkdir(parents=True, exist_ok=True)
    write_results(outcome.results, out)
    return {
        "results.csv": out / "results.csv",
        "results.parquet": out / "results.parquet",
        **write_report(outcome, out),
    }
