"""The tidy results table: one row per encoder x dataset x analysis x metric.

Every row of the project is built here, by a :class:`RowContext` (what the row is about) and
:meth:`RowContext.rows` / :meth:`RowContext.error` (what was measured), so the columns cannot
drift between the places that produce results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from medprobe._version import __version__
from medprobe.analysis.stats import Estimate

if TYPE_CHECKING:
    from medprobe.datasets.base import Dataset
    from medprobe.encoders.base import Encoder

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


@dataclass(frozen=True)
class Row:
    """One result: a metric of one analysis of one encoder on one dataset."""

    encoder: str
    domain: str
    dataset: str
    modality: str
    analysis: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    seed: int
    encoder_revision: str
    medprobe_version: str
    params: str


@dataclass(frozen=True)
class RowContext:
    """What every row of one (encoder, dataset) pair shares."""

    encoder: str
    dataset: str
    seed: int = 0
    domain: str = ""
    modality: str = ""
    encoder_revision: str = ""

    @classmethod
    def of(cls, encoder: Encoder, dataset: Dataset, seed: int = 0) -> RowContext:
        """The context of ``encoder`` on ``dataset``: names, domain and modality as given now."""
        return cls(
            encoder=encoder.name,
            dataset=dataset.name,
            seed=seed,
            domain=encoder.spec.domain,
            modality=dataset.modality,
            encoder_revision=encoder.weights_source or encoder.spec.revision or "",
        )

    def with_encoder(self, name: str, domain: str = "", revision: str = "") -> RowContext:
        """The same dataset and seed for another "model" (e.g. the OCR of a text audit)."""
        return replace(self, encoder=name, domain=domain, encoder_revision=revision)

    def rows(self, analysis: str, scores: Mapping[str, Estimate], params: str = "") -> list[Row]:
        """One row per metric of ``scores``."""
        return [
            Row(
                encoder=self.encoder,
                domain=self.domain,
                dataset=self.dataset,
                modality=self.modality,
                analysis=analysis,
                metric=metric,
                value=float(est.value),
                ci_low=float(est.ci_low),
                ci_high=float(est.ci_high),
                n=int(est.n),
                seed=self.seed,
                encoder_revision=self.encoder_revision,
                medprobe_version=__version__,
                params=params,
            )
            for metric, est in scores.items()
        ]

    def error(self, message: str) -> Row:
        """The row that records a failure of this pair (the study goes on)."""
        nan = float("nan")
        return self.rows("error", {"error": Estimate(nan, nan, nan, 0)}, message)[0]


def row_from_dict(data: Mapping[str, Any]) -> Row:
    """A row read back from JSON (a finished unit on disk)."""
    return Row(**{c: data[c] for c in COLUMNS})


def results_frame(rows: Sequence[Row]) -> pd.DataFrame:
    """Rows -> a DataFrame with the standard columns in the standard order."""
    return pd.DataFrame([asdict(r) for r in rows], columns=list(COLUMNS))
