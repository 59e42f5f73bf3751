"""A study's files: the results table, views.json (what the report needs besides the rows),
and reading them back to rebuild the report."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medprobe.analysis.outcome import StudyOutcome, View
from medprobe.analysis.rows import read_results, schema_json
from medprobe.atomic import atomic_write
from medprobe.errors import MedprobeError
from medprobe.report.html import write_report


def json_default(value: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value))


def write_json(path: Path, data: Any) -> None:
    """``data`` as JSON at ``path``, atomically."""
    atomic_write(path, lambda h: h.write(json.dumps(data, default=json_default).encode()))


def write_results(frame: pd.DataFrame, out: Path) -> None:
    """``out/results.csv``, ``out/results.parquet`` and the schema of their columns,
    ``out/results.schema.json`` (each written atomically)."""
    atomic_write(out / "results.csv", lambda h: frame.to_csv(h, index=False))
    atomic_write(out / "results.parquet", lambda h: frame.to_parquet(h, index=False))
    atomic_write(out / "results.schema.json", lambda h: h.write(schema_json().encode()))


def write_views(outcome: StudyOutcome, out: Path) -> None:
    """``out/views.json``: what the report needs besides the results table."""
    write_json(
        out / "views.json",
        {
            "title": outcome.title,
            "views": [asdict(v) for v in outcome.views],
            "encoders": outcome.encoders,
            "datasets": outcome.datasets,
            "skipped": outcome.skipped,
            "thumbnails": outcome.thumbnails,
            "overlay_examples": outcome.overlay_examples,
            "audit_examples": outcome.audit_examples,
        },
    )


def load_outcome(out: Path) -> StudyOutcome:
    """A finished study's outcome, from ``results.parquet`` and ``views.json``."""
    if not (out / "results.parquet").is_file() or not (out / "views.json").is_file():
        raise MedprobeError(f"{out} has no finished study (results.parquet and views.json)")
    data = json.loads((out / "views.json").read_text())
    return StudyOutcome(
        title=data["title"],
        results=read_results(out / "results.parquet"),
        views=[View(**v) for v in data["views"]],
        encoders=data["encoders"],
        datasets=data["datasets"],
        skipped=data["skipped"],
        thumbnails=data["thumbnails"],
        overlay_examples=data["overlay_examples"],
        audit_examples=data.get("audit_examples", {}),
    )


def write_outputs(outcome: StudyOutcome, out: Path) -> dict[str, Path]:
    """results.csv, results.parquet, views.json, report.html and figures/ under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_results(outcome.results, out)
    write_views(outcome, out)
    return {
        "results.csv": out / "results.csv",
        "results.parquet": out / "results.parquet",
        **write_report(outcome, out),
    }
