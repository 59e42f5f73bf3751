"""The tidy results table: one row per encoder x dataset x analysis x metric."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from medprobe.analysis.stats import Estimate
from medprobe.atomic import atomic_write

COLUMNS = (
    "encoder",
    "domain",
    "dataset",
    "modality",
    "analysis",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "seed",
    "encoder_revision",
    "medprobe_version",
    "params",
)


def estimate_rows(
    context: Mapping[str, Any], analysis: str, scores: Mapping[str, Estimate], params: str = ""
) -> list[dict[str, Any]]:
    """Rows for one analysis; ``context`` holds the encoder/dataset/seed/version columns."""
    return [
        {
            **context,
            "analysis": analysis,
            "metric": metric,
            "value": est.value,
            "ci_low": est.ci_low,
            "ci_high": est.ci_high,
            "n": est.n,
            "params": params,
        }
        for metric, est in scores.items()
    ]


def results_frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows -> a DataFrame with the standard columns in the standard order."""
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_results(frame: pd.DataFrame, out: Path) -> None:
    """``out/results.csv`` and ``out/results.parquet`` (written atomically)."""
    atomic_write(out / "results.csv", lambda h: frame.to_csv(h, index=False))
    atomic_write(out / "results.parquet", lambda h: frame.to_parquet(h, index=False))
