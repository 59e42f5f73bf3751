"""Which results the report and the figures show, and how they are named in words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from medprobe.analysis.probes import PROTOCOLS
from medprobe.analysis.rows import SCHEMA

#: linear-probe protocols a selection leaves out unless it names them (the first is the default)
OTHER_PROTOCOLS = PROTOCOLS[1:]

#: (analysis, metric, parameters) of the summary columns and bar charts.
KEY_METRICS: tuple[tuple[str, str, Mapping[str, Any]], ...] = (
    ("separability", "silhouette_cosine", {}),
    ("knn", "balanced_accuracy", {"k": 10}),
    ("linear_probe", "balanced_accuracy", {}),
    ("linear_probe", "auroc", {}),
    ("zero_shot", "balanced_accuracy", {}),
    ("few_shot", "balanced_accuracy", {"shots": 4}),
)

ANALYSIS_NAMES = {
    "separability": "separability",
    "knn": "kNN probe",
    "linear_probe": "linear probe",
    "few_shot": "few-shot probe",
    "zero_shot": "zero-shot",
    "geometry": "geometry",
    "similarity": "similarity",
    "overlay": "text overlay",
    "text_audit": "text audit",
    "text_reliance": "text reliance",
}
METRIC_NAMES = {
    "auroc": "AUROC",
    "macro_f1": "macro-F1",
    "silhouette_cosine": "silhouette (cosine)",
    "silhouette_euclidean": "silhouette (euclidean)",
    "linear_cka_unbiased": "linear CKA (unbiased)",
    "mutual_knn_k10": "mutual kNN (k=10)",
}


def displayable(results: pd.DataFrame) -> pd.DataFrame:
    """The results with missing text shown as empty (groupby keeps those rows)."""
    text = [c for c, (dtype, _) in SCHEMA.items() if dtype == "string" and c in results]
    frame = results.copy()
    frame[text] = frame[text].astype(object).fillna("")
    return frame


def select(
    results: pd.DataFrame,
    analysis: str,
    metric: str,
    params: Mapping[str, Any] = (),
    *,
    layer: str | None = "final",
) -> pd.DataFrame:
    """The rows of one analysis and metric whose ``param_*`` columns equal ``params``, at
    ``layer`` (default: the final embedding; None: every layer).

    A linear probe run under several protocols counts once, under the default one (medprobe),
    unless ``params`` names the protocol."""
    params = dict(params)
    keep = (results.analysis == analysis) & (results.metric == metric)
    if layer is not None and "layer" in results:
        keep &= results.layer.fillna("final").replace("", "final") == layer
    for name, value in params.items():
        keep &= results[f"param_{name}"] == value
    if "protocol" not in params and "param_protocol" in results:
        keep &= ~results.param_protocol.isin(OTHER_PROTOCOLS)  # missing may be NaN or ""
    return results[keep.fillna(False).astype(bool)]


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " "))


def title(analysis: str, metric: str, params: Mapping[str, Any] = ()) -> str:
    """e.g. ``kNN probe (k = 10): balanced accuracy``."""
    setting = ", ".join(f"{k} = {v}" for k, v in dict(params).items())
    name = ANALYSIS_NAMES.get(analysis, analysis.replace("_", " "))
    return f"{name}{f' ({setting})' if setting else ''}: {metric_name(metric)}"


def slug(analysis: str, metric: str, params: Mapping[str, Any] = ()) -> str:
    """A file-name stem: ``knn_balanced_accuracy_k10``."""
    suffix = "".join(f"_{k}{v}" for k, v in dict(params).items())
    return f"{analysis}_{metric}{suffix}"


def settings(results: pd.DataFrame) -> pd.Series:
    """Per row, its parameters and fitted choices in words (``k = 10, metric = cosine``)."""
    columns = [c for c in results.columns if c.startswith(("param_", "selected_"))]

    def words(row: pd.Series) -> str:
        parts = [f"vs {row.encoder_b}"] if row.get("encoder_b") else []
        for column in columns:
            value = row[column]
            if pd.isna(value) or value == "":
                continue
            name = column.removeprefix("param_").replace("selected_", "chosen ")
            parts.append(f"{name} = {value:g}" if isinstance(value, float) else f"{name} = {value}")
        return ", ".join(parts)

    return results.apply(words, axis=1) if len(results) else pd.Series([], dtype=object)
