"""``medprobe compare --text``: the text side of every model side by side, and medical vs
general models paired on the same test images.

Per dataset: each model's zero-shot balanced accuracy (template ensemble, names as given), its
spread over templates (SD), the expert - lay difference and the text-addressable share, with
the CIs of the study's rows; then the mean over medical models minus the mean over general
models of the zero-shot balanced accuracy (of the names the share used), the expert - lay
gain and the text share, each a paired stratified bootstrap on the images every model was
scored on (CI and p-value, Holm-adjusted over the three).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from medprobe.analysis import metrics
from medprobe.analysis.rows import read_results
from medprobe.analysis.stats import holm, paired_bootstrap
from medprobe.errors import MedprobeError
from medprobe.study.units import UnitStore

#: (label, analysis, metric, parameters) of the side-by-side table
MEASURES: tuple[tuple[str, str, str, dict[str, str]], ...] = (
    (
        "zero-shot BA (ensemble)",
        "prompt_sensitivity",
        "balanced_accuracy",
        {"template": "ensemble", "class_names": "given"},
    ),
    (
        "template SD",
        "prompt_sensitivity",
        "balanced_accuracy_sd",
        {"spread": "templates", "class_names": "given"},
    ),
    ("expert - lay", "terminology", "balanced_accuracy_difference", {}),
    ("text share", "text_share", "text_share", {}),
)
DOMAINS = ("medical", "general")
DOMAIN_COLUMNS = ["measure", "medical", "general", "difference", "ci_low", "ci_high", "p_value"]


@dataclass(frozen=True)
class TextComparison:
    """One dataset's text side: per model (``models``: encoder, domain, measure, value, ci_low,
    ci_high) and medical minus general (``domains``: one row per paired measure, with
    ``p_holm``)."""

    dataset: str
    models: pd.DataFrame
    domains: pd.DataFrame
    n: int = 0


def _side_by_side(results: pd.DataFrame, dataset: str) -> pd.DataFrame:
    rows = []
    frame = results[results.dataset == dataset]
    for label, analysis, metric, params in MEASURES:
        keep = (frame.analysis == analysis) & (frame.metric == metric)
        for name, value in params.items():
            keep &= frame[f"param_{name}"] == value
        for row in frame[keep.fillna(False).astype(bool)].itertuples():
            rows.append([row.encoder, row.domain, label, row.value, row.ci_low, row.ci_high])
    return pd.DataFrame(
        rows, columns=["encoder", "domain", "measure", "value", "ci_low", "ci_high"]
    )


def _aligned(predictions: dict[str, dict], key: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every model's ``key`` predictions on the first model's images (models scored on other
    images are left out: they are not paired), and the labels."""
    models = sorted(m for m, p in predictions.items() if key in p)
    if not models:
        return {}, np.zeros(0, dtype=np.int64)
    reference = predictions[models[0]]
    order = {i: n for n, i in enumerate(reference["ids"])}
    aligned = {}
    for model in models:
        p = predictions[model]
        if set(p["ids"]) != set(order):
            continue
        values = np.empty(len(order), dtype=np.int64)
        values[[order[i] for i in p["ids"]]] = p[key]
        aligned[model] = values
    return aligned, np.asarray(reference["y_true"])


def _mean_over(models: list[Callable[[np.ndarray], np.ndarray]]):
    return lambda idx: np.mean([f(idx) for f in models], axis=0)


def _scorer(
    measure: str, aligned: list[dict[str, np.ndarray]], y: np.ndarray
) -> Callable[[str], Callable[[np.ndarray], np.ndarray]]:
    """``model -> (idx -> [B])``: the model's value of ``measure`` on resampled images."""
    k = int(y.max()) + 1
    chance = 1.0 / len(np.unique(y))

    def ba(model: str, part: int) -> Callable[[np.ndarray], np.ndarray]:
        return metrics.statistic(metrics.balanced_accuracy, y, aligned[part][model], k)

    def score(model: str) -> Callable[[np.ndarray], np.ndarray]:
        first = ba(model, 0)
        if measure == "zero-shot BA":
            return first
        second = ba(model, 1)
        if measure == "expert - lay":
            return lambda idx: first(idx) - second(idx)

        def share(idx: np.ndarray) -> np.ndarray:
            above = second(idx) - chance
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(above > 0, (first(idx) - chance) / above, np.nan)

        return share

    return score


#: paired measure -> the kept predictions it needs
PAIRED = {
    "zero-shot BA": ("zero_shot",),
    "expert - lay": ("expert", "lay"),
    "text share": ("zero_shot", "linear"),
}


def _domain_tests(
    predictions: dict[str, dict],
    domain_of: dict[str, str],
    *,
    n_resamples: int,
    seed: int,
) -> tuple[pd.DataFrame, int]:
    rows, n = [], 0
    for measure, keys in PAIRED.items():
        aligned = [_aligned(predictions, key) for key in keys]
        y = aligned[0][1]
        models = [m for m in aligned[0][0] if all(m in a[0] for a in aligned)]
        groups = {d: [m for m in models if domain_of.get(m) == d] for d in DOMAINS}
        if not all(groups.values()):
            continue
        score = _scorer(measure, [a[0] for a in aligned], y)
        diff = paired_bootstrap(
            _mean_over([score(m) for m in groups["medical"]]),
            _mean_over([score(m) for m in groups["general"]]),
            y,
            n_resamples=n_resamples,
            seed=seed,
        )
        n = diff.n
        rows.append(
            [
                measure,
                len(groups["medical"]),
                len(groups["general"]),
                diff.difference,
                diff.ci_low,
                diff.ci_high,
                diff.p_value,
            ]
        )
    table = pd.DataFrame(rows, columns=DOMAIN_COLUMNS)
    table["p_holm"] = holm(table.p_value.tolist()) if len(table) else []
    return table, n


def compare_text(out: Path, *, n_resamples: int = 2000, seed: int = 0) -> list[TextComparison]:
    """The text side of a finished study folder, per dataset (see the module docstring)."""
    path = out / "results.parquet"
    if not path.is_file():
        raise MedprobeError(f"{out} has no results.parquet; run `medprobe run` first")
    results = read_results(path)
    measured = results[results.analysis.isin([m[1] for m in MEASURES])]
    if measured.empty:
        raise MedprobeError(
            f"{out} has no text-side results; add prompt_sensitivity, terminology and "
            "text_share to the study's analyses: and run it again"
        )
    predictions: dict[str, dict[str, dict]] = {}
    domains: dict[str, dict[str, str]] = {}
    for unit in UnitStore(out).all():
        if "text_side" in unit.predictions:
            predictions.setdefault(unit.dataset, {})[unit.encoder] = unit.predictions["text_side"]
            domains.setdefault(unit.dataset, {})[unit.encoder] = unit.domain
    comparisons = []
    for dataset in dict.fromkeys(measured.dataset):
        tests, n = _domain_tests(
            predictions.get(dataset, {}),
            domains.get(dataset, {}),
            n_resamples=n_resamples,
            seed=seed,
        )
        comparisons.append(TextComparison(dataset, _side_by_side(results, dataset), tests, n))
    return comparisons


def _fmt(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def text_tables(comparison: TextComparison) -> list[Table]:
    """The comparison as rich tables: models side by side, then medical vs general."""
    measures = list(dict.fromkeys(m[0] for m in MEASURES))
    models = Table("model", "domain", *measures, title=f"{comparison.dataset}: the text side")
    for (encoder, domain), group in comparison.models.groupby(["encoder", "domain"], sort=False):
        cells = {r.measure: _fmt(r.value, r.ci_low, r.ci_high) for r in group.itertuples()}
        models.add_row(encoder, domain, *(cells.get(m, "-") for m in measures))
    tables = [models]
    if len(comparison.domains):
        paired = Table(
            "measure",
            "models (medical / general)",
            "medical - general [95% CI]",
            "p",
            "p (Holm)",
            title=f"paired bootstrap on the same {comparison.n} test images",
        )
        for row in comparison.domains.itertuples():
            paired.add_row(
                row.measure,
                f"{row.medical} / {row.general}",
                _fmt(row.difference, row.ci_low, row.ci_high),
                f"{row.p_value:.4f}",
                f"{row.p_holm:.4f}",
            )
        tables.append(paired)
    return tables
