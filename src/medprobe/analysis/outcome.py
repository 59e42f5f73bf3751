"""What a study produces besides its rows: 2-D views, provenance tables, report examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from medprobe.datasets.base import Dataset


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
    #: stage (extract, an analysis, embedding <method>) -> seconds of this run, all units
    timings: dict[str, float] = field(default_factory=dict)


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    """The report's description of a dataset: name, modality, size, classes, fingerprint."""
    return {
        "name": dataset.name,
        "modality": dataset.modality,
        "n": len(dataset),
        "classes": dataset.class_counts(),
        "fingerprint": dataset.fingerprint(),
    }
