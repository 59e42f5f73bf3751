"""``medprobe compare``: rank models with CIs, and paired tests on the same test images."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from medprobe.analysis import metrics
from medprobe.analysis.stats import PairedDifference, holm, paired_bootstrap
from medprobe.errors import MedprobeError
from medprobe.study.units import Unit, UnitStore


@dataclass(frozen=True)
class Comparison:
    """One dataset's ranking, pairwise tests and medical-vs-general test."""

    dataset: str
    ranking: pd.DataFrame  # encoder, domain, value, ci_low, ci_high
    pairs: pd.DataFrame  # a, b, difference, ci_low, ci_high, p_value, p_holm
    domains: PairedDifference | None  # mean correctness, medical minus general


def _load_predictions(out: Path) -> dict[str, dict[str, Unit]]:
    found: dict[str, dict[str, Unit]] = {}
    for unit in UnitStore(out).all():
        if "ids" in unit.predictions:  # linear-probe predictions (not only text-side ones)
            found.setdefault(unit.dataset, {})[unit.encoder] = unit
    return found


def compare(out: Path, *, n_resamples: int = 2000, seed: int = 0) -> list[Comparison]:
    """Linear-probe balanced accuracy: ranking with CIs, paired bootstrap for every pair of
    models (Holm-corrected), and the mean of medical models vs the mean of general models."""
    results_path = out / "results.parquet"
    if not results_path.is_file():
        raise MedprobeError(f"{out} has no results.parquet; run `medprobe run` first")
    results = pd.read_parquet(results_path)
    units = _load_predictions(out)
    comparisons = []
    for dataset, by_model in units.items():
        rows = results[
            (results.dataset == dataset)
            & (results.analysis == "linear_probe")
            & (results.metric == "balanced_accuracy")
        ]
        ranking = (
            rows[["encoder", "domain", "value", "ci_low", "ci_high"]]
            .sort_values("value", ascending=False)
            .reset_index(drop=True)
        )
        models = sorted(by_model)
        reference = by_model[models[0]].predictions
        order = {i: n for n, i in enumerate(reference["ids"])}
        y = np.array(reference["y_true"])
        k = reference["n_classes"]
        preds = {}
        for model in models:
            p = by_model[model].predictions
            if set(p["ids"]) != set(order):
                continue  # evaluated on other images: not paired
            aligned = np.empty(len(order), dtype=np.int64)
            aligned[[order[i] for i in p["ids"]]] = p["y_pred"]
            preds[model] = aligned
        pairs = []
        for a, b in combinations(sorted(preds), 2):
            diff = paired_bootstrap(
                metrics.statistic(metrics.balanced_accuracy, y, preds[a], k),
                metrics.statistic(metrics.balanced_accuracy, y, preds[b], k),
                y,
                n_resamples=n_resamples,
                seed=seed,
            )
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "difference": diff.difference,
                    "ci_low": diff.ci_low,
                    "ci_high": diff.ci_high,
                    "p_value": diff.p_value,
                }
            )
        table = pd.DataFrame(
            pairs, columns=["a", "b", "difference", "ci_low", "ci_high", "p_value"]
        )
        table["p_holm"] = holm(table.p_value.tolist()) if len(table) else []
        domain_of = {m: by_model[m].domain for m in preds}
        groups = {d: [m for m in preds if domain_of[m] == d] for d in ("medical", "general")}
        domains = None
        if all(groups.values()):
            correct = {d: np.mean([preds[m] == y for m in ms], axis=0) for d, ms in groups.items()}

            def mean_correct(values):
                return lambda idx: values[idx].mean(axis=1)

            domains = paired_bootstrap(
                mean_correct(correct["medical"]),
                mean_correct(correct["general"]),
                y,
                n_resamples=n_resamples,
                seed=seed,
            )
        comparisons.append(Comparison(dataset, ranking, table, domains))
    if not comparisons:
        raise MedprobeError(f"{out} has no linear-probe predictions to compare")
    return comparisons
