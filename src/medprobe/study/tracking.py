"""Optional MLflow logging of a finished study (``pip install "medprobe[mlflow]"``).

One MLflow run per study run: the study config as params (flattened, ``models.0.name``),
the report's key metrics (:data:`~medprobe.report.selection.KEY_METRICS`) of every model on
every dataset as metrics with their 95% CI bounds (``<metric>/<dataset>/<model>``, ``.../ci_low``,
``.../ci_high``), and results.csv, report.html and run.json as artifacts. Switched on by the
study file's ``mlflow:`` key or ``medprobe run --mlflow URI``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pandas as pd

from medprobe._version import __version__
from medprobe.analysis.rows import read_results
from medprobe.errors import MedprobeError
from medprobe.report.selection import KEY_METRICS, select, slug
from medprobe.study.config import MlflowConfig

#: What a study run folder gives MLflow as artifacts (those present are logged).
ARTIFACTS = ("results.csv", "results.schema.json", "report.html", "run.json")
#: MLflow's limit on a param value.
MAX_PARAM_LENGTH = 6000
_UNSAFE = re.compile(r"[^\w.\- ]+")


def require_mlflow() -> None:
    """Raise a one-line error unless the ``mlflow`` client library is installed."""
    if importlib.util.find_spec("mlflow") is None:
        raise MedprobeError(
            "MLflow logging is switched on but mlflow is not installed: "
            'pip install "medprobe[mlflow]"'
        )


def _name(*parts: str) -> str:
    """An MLflow metric/param key: each part with characters MLflow refuses replaced."""
    return "/".join(_UNSAFE.sub("_", str(p)).strip(". ") or "_" for p in parts)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """The study config as MLflow params: nested keys joined with dots, lists of plain values
    joined with commas, lists of mappings numbered (``models.0.name``); empty values left out."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, list) and any(isinstance(v, dict) for v in value):
            value = {str(i): v for i, v in enumerate(value)}
        if isinstance(value, dict):
            params.update(flat_params(value, f"{name}."))
        elif value not in (None, "", []):
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            params[_name(name)] = text[:MAX_PARAM_LENGTH]
    return params


def key_metrics(results: pd.DataFrame) -> dict[str, float]:
    """The key metrics of a results table: value and CI bounds per model x dataset."""
    results = results[results.layer == "final"]
    metrics: dict[str, float] = {}
    for analysis, metric, params in KEY_METRICS:
        for r in select(results, analysis, metric, params).itertuples():
            if not math.isfinite(r.value):
                continue
            key = _name(slug(analysis, metric, params), r.dataset, r.encoder)
            metrics[key] = float(r.value)
            for bound in ("ci_low", "ci_high"):
                if math.isfinite(getattr(r, bound)):
                    metrics[f"{key}/{bound}"] = float(getattr(r, bound))
    return metrics


def log_study(run: Path, settings: MlflowConfig) -> str:
    """Log the finished study in ``run`` (params, key metrics, artifacts) as one MLflow run;
    returns the MLflow run id."""
    require_mlflow()
    import mlflow
    from mlflow.exceptions import MlflowException

    recorded = json.loads((run / "run.json").read_text())
    config = recorded["config"]
    results = read_results(run / "results.parquet")
    tags = {"medprobe.version": __version__, "medprobe.run_folder": str(run.resolve())}
    if len(results):
        tags.update({f"medprobe.{c}": str(results[c].iloc[0]) for c in ("run_id", "started_at")})
    pairs = recorded.get("pairs", {})
    metrics = {
        **key_metrics(results),
        **{f"pairs/{k}": float(v) for k, v in pairs.items() if isinstance(v, int | float)},
    }
    now = int(time.time() * 1000)
    client = mlflow.MlflowClient(settings.tracking_uri)
    experiment_name = settings.experiment or config["name"]
    run_id = None
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(
                experiment_name, artifact_location=settings.artifact_location
            )
        )
        logged = client.create_run(
            experiment_id, run_name=settings.run_name or config["name"], tags=tags
        )
        run_id = logged.info.run_id
        client.log_batch(
            run_id,
            params=[mlflow.entities.Param(k, v) for k, v in flat_params(config).items()],
            metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in metrics.items()],
        )
        for name in ARTIFACTS:
            if (run / name).is_file():
                client.log_artifact(run_id, str(run / name))
        client.set_terminated(run_id)
    except (MlflowException, OSError) as exc:
        if run_id is not None:  # not left "running" in the MLflow UI
            with contextlib.suppress(MlflowException, OSError):
                client.set_terminated(run_id, "FAILED")
        message = exc.message if isinstance(exc, MlflowException) else str(exc)
        raise MedprobeError(f"MLflow logging to {client.tracking_uri} failed: {message}") from None
    return run_id
