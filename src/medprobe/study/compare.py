"""``medprobe compare``: rank models with CIs, and paired tests on the same test images.

One metric throughout: the linear probe's balanced accuracy (the ranking, every pair of models,
and medical vs general). Every test is a paired sign-flip permutation test on the per-image
(or, with groups, per-group) correctness -- exact level at any number of test images -- and
the pairs and the domain test form one Holm family, so the family-wise error is at most 0.05.
The intervals of the differences are stratified Wald intervals with Agresti-Min smoothing
(:func:`~medprobe.analysis.stats.paired_difference`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medprobe.analysis.rows import read_results
from medprobe.analysis.stats import PairedDifference, holm, paired_difference
from medprobe.atomic import atomic_write
from medprobe.errors import MedprobeError
from medprobe.report.outputs import write_json
from medprobe.study.units import Unit, UnitStore

METRIC = "balanced_accuracy"
DOMAIN_TEST = ("medical", "general")
TEST_COLUMNS = ["a", "b", "difference", "ci_low", "ci_high", "p_value", "p_holm"]


@dataclass(frozen=True)
class Comparison:
    """One dataset's ranking, pairwise tests and medical-vs-general test."""

    dataset: str
    ranking: pd.DataFrame  # encoder, domain, value, ci_low, ci_high
    pairs: pd.DataFrame  # a, b, difference, ci_low, ci_high, p_value, p_holm
    #: mean balanced accuracy of the medical models minus that of the general ones
    domains: PairedDifference | None
    #: the domain test's Holm-adjusted p-value (in one family with the pairs)
    domains_p_holm: float | None = None
    n: int = 0
    unit: str = "image"

    def record(self) -> dict[str, Any]:
        """The comparison as JSON-ready data."""
        domains = None
        if self.domains is not None:
            domains = {
                "a": DOMAIN_TEST[0],
                "b": DOMAIN_TEST[1],
                "difference": self.domains.difference,
                "ci_low": self.domains.ci_low,
                "ci_high": self.domains.ci_high,
                "p_value": self.domains.p_value,
                "p_holm": self.domains_p_holm,
            }
        return {
            "dataset": self.dataset,
            "n": self.n,
            "unit": self.unit,
            "ranking": self.ranking.to_dict("records"),
            "pairs": self.pairs.to_dict("records"),
            "medical_vs_general": domains,
        }


def _load_predictions(out: Path) -> dict[str, dict[str, Unit]]:
    found: dict[str, dict[str, Unit]] = {}
    for unit in UnitStore(out).all():
        if "ids" in unit.predictions:  # linear-probe predictions (not only text-side ones)
            found.setdefault(unit.dataset, {})[unit.encoder] = unit
    return found


def _aligned_correctness(by_model: dict[str, Unit]):
    """Per-image correctness of every model on the first model's test images (models scored
    on other images are left out: they are not paired), the labels and groups."""
    models = sorted(by_model)
    reference = by_model[models[0]].predictions
    order = {i: n for n, i in enumerate(reference["ids"])}
    y = np.array(reference["y_true"])
    groups = reference.get("groups")
    correct = {}
    for model in models:
        p = by_model[model].predictions
        if set(p["ids"]) != set(order):
            continue
        aligned = np.empty(len(order), dtype=np.int64)
        aligned[[order[i] for i in p["ids"]]] = p["y_pred"]
        correct[model] = (aligned == y).astype(np.float64)
    return correct, y, None if groups is None else np.array(groups, dtype=str)


def compare(out: Path, *, n_permutations: int = 9999, seed: int = 0) -> list[Comparison]:
    """Linear-probe balanced accuracy: ranking with CIs, a paired test for every pair of
    models and for the mean of the medical models against the mean of the general ones (one
    Holm family), with paired intervals of the differences."""
    results_path = out / "results.parquet"
    if not results_path.is_file():
        raise MedprobeError(f"{out} has no results.parquet; run `medprobe run` first")
    results = read_results(results_path)
    options = {"n_permutations": n_permutations, "seed": seed}
    comparisons = []
    for dataset, by_model in _load_predictions(out).items():
        protocol = next(iter(by_model.values())).predictions.get("protocol", "medprobe")
        rows = results[
            (results.dataset == dataset)
            & (results.analysis == "linear_probe")
            & (results.layer.fillna("final") == "final")
            & (results.metric == METRIC)
            & (results.param_protocol.fillna("medprobe") == protocol)
        ]
        ranking = (
            rows[["encoder", "domain", "value", "ci_low", "ci_high"]]
            .astype({"encoder": object, "domain": object})
            .sort_values("value", ascending=False)
            .reset_index(drop=True)
        )
        correct, y, groups = _aligned_correctness(by_model)
        tests = []
        for a, b in combinations(sorted(correct), 2):
            diff = paired_difference(correct[a], correct[b], y, groups, balanced=True, **options)
            tests.append((a, b, diff))
        domain_of = {m: by_model[m].domain for m in correct}
        members = {d: [m for m in correct if domain_of[m] == d] for d in DOMAIN_TEST}
        domains = None
        if all(members.values()):
            mean = {d: np.mean([correct[m] for m in ms], axis=0) for d, ms in members.items()}
            domains = paired_difference(
                mean[DOMAIN_TEST[0]], mean[DOMAIN_TEST[1]], y, groups, balanced=True, **options
            )
        family = [t[2].p_value for t in tests] + ([domains.p_value] if domains else [])
        adjusted = holm(family) if family else []
        pairs = pd.DataFrame(
            [
                (a, b, d.difference, d.ci_low, d.ci_high, d.p_value, adjusted[i])
                for i, (a, b, d) in enumerate(tests)
            ],
            columns=TEST_COLUMNS,
        )
        comparisons.append(
            Comparison(
                dataset,
                ranking,
                pairs,
                domains,
                adjusted[-1] if domains else None,
                n=len(y),
                unit=str(rows.unit.dropna().iloc[0]) if rows.unit.notna().any() else "image",
            )
        )
    if not comparisons:
        raise MedprobeError(f"{out} has no linear-probe predictions to compare")
    return comparisons


def comparison_table(comparisons: list[Comparison]) -> pd.DataFrame:
    """Every comparison as one tidy table: a row per ranked model (``kind = rank``), per pair
    (``pair``) and per domain test (``domains``)."""
    rows: list[dict[str, Any]] = []
    for c in comparisons:
        for rank, r in enumerate(c.ranking.itertuples(), start=1):
            rows.append(
                {
                    "dataset": c.dataset,
                    "kind": "rank",
                    "rank": rank,
                    "a": r.encoder,
                    "domain": r.domain,
                    "value": r.value,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                }
            )
        for r in c.pairs.itertuples():
            rows.append(
                {
                    "dataset": c.dataset,
                    "kind": "pair",
                    "a": r.a,
                    "b": r.b,
                    "value": r.difference,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "p_value": r.p_value,
                    "p_holm": r.p_holm,
                }
            )
        if c.domains is not None:
            d = c.domains
            rows.append(
                {
                    "dataset": c.dataset,
                    "kind": "domains",
                    "a": DOMAIN_TEST[0],
                    "b": DOMAIN_TEST[1],
                    "value": d.difference,
                    "ci_low": d.ci_low,
                    "ci_high": d.ci_high,
                    "p_value": d.p_value,
                    "p_holm": c.domains_p_holm,
                }
            )
    columns = [
        "dataset",
        "kind",
        "rank",
        "a",
        "b",
        "domain",
        "value",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame.insert(2, "metric", f"linear_probe {METRIC}")
    return frame.astype({"rank": "Int64"})


def _finite(data: Any) -> Any:
    """``data`` with NaN (and missing) numbers as ``None``: strict JSON has no NaN."""
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_finite(v) for v in data]
    if isinstance(data, float | np.floating) and not np.isfinite(data):
        return None
    return None if data is pd.NA else data


def comparison_json(comparisons: list[Comparison]) -> dict[str, Any]:
    """What ``compare.json`` holds: the metric, the methods, and every dataset's comparison."""
    return _finite(
        {
            "analysis": "linear_probe",
            "metric": METRIC,
            "test": "paired sign-flip permutation test, Holm-adjusted within each dataset",
            "interval": "stratified paired Wald with Agresti-Min smoothing, 95%",
            "datasets": [c.record() for c in comparisons],
        }
    )


def write_comparison(comparisons: list[Comparison], out: Path) -> dict[str, Path]:
    """``out/compare.json`` and ``out/compare.csv`` (atomically)."""
    paths = {"compare.json": out / "compare.json", "compare.csv": out / "compare.csv"}
    write_json(paths["compare.json"], comparison_json(comparisons))
    table = comparison_table(comparisons)
    atomic_write(paths["compare.csv"], lambda h: table.to_csv(h, index=False))
    return paths
