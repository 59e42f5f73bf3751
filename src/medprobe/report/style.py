"""One look for every figure (report and paper): a colour-blind-safe colour per model, with its
domain shown by the hue family, and the chance level of accuracy-type metrics.

Colours are Okabe & Ito's colour-blind-safe set (Okabe & Ito 2008, "Color Universal Design"):
warm hues for medical models, cool hues for general ones, greys for baselines. When a family
has more models than hues, markers (and bar hatches) tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

FAMILIES: dict[str, tuple[str, ...]] = {
    "medical": ("#D55E00", "#E69F00", "#CC79A7", "#F0E442"),
    "general": ("#0072B2", "#56B4E9", "#009E73"),
    "baseline": ("#000000", "#777777", "#BBBBBB"),
    "unknown": ("#8C564B", "#B07AA1"),
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PLOTLY_MARKERS = (
    "circle",
    "square",
    "triangle-up",
    "diamond",
    "triangle-down",
    "cross",
    "x",
    "star",
)
HATCHES = ("", "//", "..", "xx", "\\\\", "--", "++", "||")
DOMAIN_LEGEND = "warm colours: medical · cool colours: general · greys: baselines"


@dataclass(frozen=True)
class Style:
    """How one model is drawn everywhere."""

    colour: str
    marker: str
    plotly_marker: str
    hatch: str


def model_styles(models: Iterable[tuple[str, str]]) -> dict[str, Style]:
    """``(name, domain)`` pairs -> a distinct style per model (stable for the same list)."""
    counts: dict[str, int] = {}
    styles = {}
    for name, domain in models:
        if name in styles:
            continue
        family = FAMILIES.get(domain or "unknown", FAMILIES["unknown"])
        k = counts.get(domain, 0)
        counts[domain] = k + 1
        turn = k // len(family)  # how many times the family's hues have been used up
        styles[name] = Style(
            family[k % len(family)],
            MARKERS[turn % len(MARKERS)],
            PLOTLY_MARKERS[turn % len(PLOTLY_MARKERS)],
            HATCHES[turn % len(HATCHES)],
        )
    return styles


def chance_level(metric: str, n_classes: int | None) -> float | None:
    """What a classifier that guesses reaches: 1/K for balanced accuracy, 0.5 for AUROC
    (plain accuracy and F1 depend on the class mix, so they get no line)."""
    if metric == "auroc":
        return 0.5
    if metric == "balanced_accuracy" and n_classes:
        return 1.0 / n_classes
    return None


def class_counts(datasets: Iterable[Mapping]) -> dict[str, int]:
    """Dataset name -> number of classes, from the outcome's dataset summaries."""
    return {d["name"]: len(d.get("classes", {})) for d in datasets}
