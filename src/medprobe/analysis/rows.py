"""The tidy results table: one row per encoder x dataset x analysis x metric (x parameters).

Every row of the project is built here, by a :class:`RowContext` (what the row is about) and
:meth:`RowContext.rows` / :meth:`RowContext.error` (what was measured), so the columns cannot
drift between the places that produce results. Hyperparameters are typed ``param_*`` columns
and fitted choices ``selected_*`` columns (scikit-learn ``cv_results_`` style); the schema
(:data:`SCHEMA`) fixes every column's dtype, so a table read back from CSV or Parquet with
:func:`read_results` has the dtypes it was written with.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from medprobe._version import __version__
from medprobe.analysis.stats import Estimate

if TYPE_CHECKING:
    from medprobe.datasets.base import Dataset
    from medprobe.encoders.base import Encoder
    from medprobe.features.featureset import FeatureSet

#: Hyperparameters an analysis may report, as ``param_<name>`` columns: name -> (dtype, meaning).
PARAMS: dict[str, tuple[str, str]] = {
    "k": ("Int64", "neighbours of the kNN probe"),
    "metric": ("string", "distance of the kNN probe"),
    "shots": ("Int64", "labelled training images per class (few-shot)"),
    "draws": ("Int64", "random draws of the few-shot training images"),
    "prompts": ("string", "zero-shot prompt set"),
    "overlay": ("string", "text overlay drawn on the images (source@position)"),
    "mask": ("string", "how detected burned-in text was removed"),
    "detector": ("string", "the text detector of a text audit"),
    "class": ("string", "the class a per-class row is about"),
    "precision": ("string", "numeric precision of the encoder's forward pass (fp32, bf16, fp16)"),
    "device": ("string", "device the features were computed on (cpu, cuda, cuda:1, ...)"),
    "protocol": ("string", "linear-probe protocol (medprobe or clip_benchmark)"),
    "max_samples": ("Int64", "images in the stratified subsample a quadratic measure ran on"),
    "template": ("string", "zero-shot prompt template ({} = class name), or ensemble"),
    "class_names": ("string", "names filling the templates: given, expert, lay, synonym N"),
    "terms": ("string", "expert or lay class names, or their difference (expert - lay)"),
    "spread": ("string", "what a spread row varies: templates or class_names"),
    "depth": ("Float64", "relative depth of a layer row's layer (block i of N: i / N)"),
}
#: Choices a fitted analysis made, as ``selected_<name>`` columns.
SELECTED: dict[str, tuple[str, str]] = {
    "C": ("Float64", "inverse regularisation strength chosen by the linear probe"),
}

#: Every column in order: name -> (pandas dtype, meaning).
SCHEMA: dict[str, tuple[str, str]] = {
    "run_id": ("string", "the study run that wrote the table"),
    "started_at": ("string", "when that run started (ISO 8601, UTC)"),
    "encoder": ("string", "the model (encoder) the row is about"),
    "encoder_b": ("string", "the other model of a pairwise row (similarity)"),
    "domain": ("string", "medical, general or baseline"),
    "dataset": ("string", "the dataset, as named in the study"),
    "modality": ("string", "the dataset's imaging modality"),
    "layer": ("string", "the network layer of the features (final: the embedding)"),
    "layer_b": ("string", "the other model's layer of a layer x layer row (layer_similarity)"),
    "analysis": ("string", "the analysis (separability, knn, linear_probe, ...)"),
    "metric": ("string", "what was measured"),
    "split": ("string", "images measured: test, or all (analyses that train nothing)"),
    "value": ("float64", "the estimate"),
    "ci_low": ("float64", "lower end of the 95% confidence interval"),
    "ci_high": ("float64", "upper end of the 95% confidence interval"),
    "n": ("int64", "images behind the estimate"),
    "unit": ("string", "unit of resampling of the interval (image, or the group column)"),
    "seed": ("int64", "seed of splits, probes and resampling"),
    **{f"param_{name}": spec for name, spec in PARAMS.items()},
    **{f"selected_{name}": spec for name, spec in SELECTED.items()},
    "error": ("string", "why the pair failed (error rows), or what a warning row warns of"),
    "encoder_revision": ("string", "weights used: hub commit or local path"),
    "dataset_fingerprint": ("string", "content fingerprint of the dataset"),
    "feature_key": ("string", "feature-store key of the features measured"),
    "medprobe_version": ("string", "medprobe version"),
}
COLUMNS = tuple(SCHEMA)


@dataclass(frozen=True)
class RunInfo:
    """The study run a results table belongs to."""

    run_id: str
    started_at: str

    @classmethod
    def new(cls) -> RunInfo:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        return cls(uuid.uuid4().hex[:12], now.isoformat())


@dataclass(frozen=True)
class Row:
    """One result: a metric of one analysis of one encoder on one dataset."""

    encoder: str
    dataset: str
    analysis: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    seed: int
    domain: str = ""
    modality: str = ""
    encoder_b: str = ""
    layer: str = "final"
    layer_b: str = ""
    split: str = "all"
    unit: str = "image"
    params: Mapping[str, Any] = field(default_factory=dict)
    selected: Mapping[str, float] = field(default_factory=dict)
    error: str = ""
    encoder_revision: str = ""
    dataset_fingerprint: str = ""
    feature_key: str = ""
    medprobe_version: str = __version__

    def record(self) -> dict[str, Any]:
        """The row as table columns (``param_*`` / ``selected_*`` spread out)."""
        data = asdict(self)
        params, selected = data.pop("params"), data.pop("selected")
        data.update({f"param_{k}": v for k, v in params.items()})
        data.update({f"selected_{k}": v for k, v in selected.items()})
        return data


@dataclass(frozen=True)
class RowContext:
    """What every row of one (encoder, dataset) pair shares; ``params`` are the pair's own
    ``param_*`` values (how the encoder ran: precision, device), merged into every row."""

    encoder: str
    dataset: str
    seed: int = 0
    domain: str = ""
    modality: str = ""
    encoder_revision: str = ""
    layer: str = "final"
    unit: str = "image"
    dataset_fingerprint: str = ""
    feature_key: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        encoder: Encoder,
        dataset: Dataset,
        seed: int = 0,
        features: FeatureSet | None = None,
    ) -> RowContext:
        """The context of ``encoder`` on ``dataset``: names, domain and modality as given now;
        ``features`` (when extracted) name the feature-store entry the rows come from."""
        return cls(
            encoder=encoder.name,
            dataset=dataset.name,
            seed=seed,
            domain=encoder.spec.domain,
            modality=dataset.modality,
            encoder_revision=encoder.weights_source or encoder.spec.revision or "",
            unit=dataset.unit,
            dataset_fingerprint=dataset.fingerprint(),
            feature_key=str((features.meta if features is not None else {}).get("cache_key", "")),
            params={"precision": encoder.precision, "device": str(encoder.device)},
        )

    def with_encoder(self, name: str, domain: str = "", revision: str = "") -> RowContext:
        """The same dataset and seed for another "model" (e.g. the OCR of a text audit)."""
        return replace(self, encoder=name, domain=domain, encoder_revision=revision, params={})

    def rows(
        self,
        analysis: str,
        scores: Mapping[str, Estimate],
        *,
        split: str = "all",
        params: Mapping[str, Any] | None = None,
        selected: Mapping[str, float] | None = None,
        encoder_b: str = "",
        layer_b: str = "",
    ) -> list[Row]:
        """One row per metric of ``scores``; ``params`` (added to the context's own) and
        ``selected`` must be schema names.

        Every row satisfies ``ci_low <= value <= ci_high`` (a value outside its interval is a
        defect and raises) and a NaN value has a NaN interval.
        """
        params, selected = {**self.params, **(params or {})}, dict(selected or {})
        unknown = sorted(set(params) - set(PARAMS)) + sorted(set(selected) - set(SELECTED))
        if unknown:
            raise ValueError(f"{analysis}: {unknown} are not declared in the results schema")
        scores = {metric: _checked(analysis, metric, est) for metric, est in scores.items()}
        return [
            Row(
                encoder=self.encoder,
                dataset=self.dataset,
                analysis=analysis,
                metric=metric,
                value=float(est.value),
                ci_low=float(est.ci_low),
                ci_high=float(est.ci_high),
                n=int(est.n),
                seed=self.seed,
                domain=self.domain,
                modality=self.modality,
                encoder_b=encoder_b,
                layer=self.layer,
                layer_b=layer_b,
                split=split,
                unit=self.unit,
                params=params,
                selected=selected,
                encoder_revision=self.encoder_revision,
                dataset_fingerprint=self.dataset_fingerprint,
                feature_key=self.feature_key,
            )
            for metric, est in scores.items()
        ]

    def error(self, message: str) -> Row:
        """The row that records a failure of this pair (the study goes on)."""
        nan = float("nan")
        row = self.rows("error", {"error": Estimate(nan, nan, nan, 0)})[0]
        return replace(row, error=message)

    def warning(
        self,
        metric: str,
        value: float,
        message: str,
        *,
        split: str = "test",
        params: Mapping[str, Any] | None = None,
    ) -> Row:
        """A row (analysis ``warning``) that says why some results of this pair should be read
        with care; ``value`` is the count it is about, ``error`` says it in words."""
        row = self.rows(
            "warning", {metric: Estimate.exact(value, int(value))}, split=split, params=params
        )[0]
        return replace(row, error=message)


#: how far (relative) a value may sit outside its interval from rounding alone
_ROUNDING = 1e-9


def _checked(analysis: str, metric: str, est: Estimate) -> Estimate:
    """``est`` with the interval invariant enforced: a NaN value gets a NaN interval; a value
    outside its interval by rounding is clamped in; by more, it raises."""
    value, low, high = float(est.value), float(est.ci_low), float(est.ci_high)
    if not np.isfinite(value):
        return Estimate(value, float("nan"), float("nan"), est.n)
    if np.isnan(low) and np.isnan(high):
        return est
    slack = _ROUNDING * max(1.0, abs(value))
    if not (low - slack <= value <= high + slack):
        raise ValueError(
            f"{analysis} {metric}: value {value!r} lies outside its interval [{low!r}, {high!r}]"
        )
    return Estimate(value, min(low, value), max(high, value), est.n)


def row_from_dict(data: Mapping[str, Any]) -> Row:
    """A row read back from JSON (a finished unit on disk)."""
    return Row(**data)


_TEXT = tuple(c for c, (dtype, _) in SCHEMA.items() if dtype == "string")


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The schema's dtypes; an empty text is missing (<NA>), as CSV cannot tell them apart.
    A table written before a column existed (``layer_b``, ``param_depth``) gets it empty."""
    missing = [c for c in SCHEMA if c not in frame]
    if missing:
        frame = frame.assign(**dict.fromkeys(missing, pd.NA))[list(SCHEMA)]
    frame = frame.astype({column: dtype for column, (dtype, _) in SCHEMA.items()})
    frame[list(_TEXT)] = frame[list(_TEXT)].replace("", pd.NA)
    return frame


def results_frame(rows: Sequence[Row], run: RunInfo | None = None) -> pd.DataFrame:
    """Rows -> a DataFrame with every schema column, in order, with the schema's dtypes."""
    records = [r.record() for r in rows]
    frame = pd.DataFrame(records, columns=list(COLUMNS))
    if run is not None:
        frame["run_id"], frame["started_at"] = run.run_id, run.started_at
    return _typed(frame)


def read_results(path: str | Path) -> pd.DataFrame:
    """A results table written by medprobe (``.csv`` or ``.parquet``), with the schema's dtypes
    (a plain ``pd.read_csv`` guesses them, e.g. float64 for an all-empty text column)."""
    path = Path(path)
    if path.suffix == ".parquet":
        return _typed(pd.read_parquet(path))
    frame = pd.read_csv(
        path, dtype=dict.fromkeys(_TEXT, str), keep_default_na=False, na_values=[""]
    )
    return _typed(frame)


def schema_json() -> str:
    """The results schema as JSON (column, dtype, description), written beside the table."""
    fields = [{"name": c, "dtype": d, "description": m} for c, (d, m) in SCHEMA.items()]
    return json.dumps({"fields": fields, "medprobe_version": __version__}, indent=1)
