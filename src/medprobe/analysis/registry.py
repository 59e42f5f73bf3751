"""The analysis registry: a name -> a declared analysis that turns features into result rows.

Declarative, like the encoder zoo: an entry names what the analysis needs and where its code
lives (``module:function``, imported on first use, so listing or validating analyses costs no
torch or scikit-learn import). The study runner, the study-file validator and the report take
the list from here; entries run in registration order, so the results table keeps its order.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from medprobe.errors import MedprobeError

#: When an analysis runs: ``listed`` when the study names it in ``analyses:``; ``always``;
#: ``overlays`` / ``text_audit`` / ``layers`` when the study file has that section.
Trigger = Literal["listed", "always", "overlays", "text_audit", "layers"]


@dataclass(frozen=True)
class AnalysisEntry:
    """A registered analysis.

    ``target`` is ``"module:function"``; the function takes a
    :class:`~medprobe.analysis.suite.UnitInput` (``scope="unit"``: one encoder on one dataset)
    or a :class:`~medprobe.analysis.suite.DatasetInput` (``scope="dataset"``: every model of one
    dataset, for cross-model analyses) and returns result rows. ``needs_text`` entries are
    skipped for vision-only encoders.
    """

    name: str
    target: str
    description: str
    scope: Literal["unit", "dataset"] = "unit"
    needs_text: bool = False
    trigger: Trigger = "listed"

    @cached_property
    def run(self) -> Callable:
        module, function = self.target.split(":")
        return getattr(importlib.import_module(module), function)


_ANALYSES: dict[str, AnalysisEntry] = {}


def register_analysis(entry: AnalysisEntry) -> AnalysisEntry:
    """Add ``entry`` to the registry (after the ones already there)."""
    if entry.name in _ANALYSES:
        raise ValueError(f"analysis {entry.name!r} is already registered")
    _ANALYSES[entry.name] = entry
    return entry


def get_analysis(name: str) -> AnalysisEntry:
    if name not in _ANALYSES:
        raise MedprobeError(
            f"unknown analysis {name!r}; known analyses: {', '.join(listed_analyses())}"
        )
    return _ANALYSES[name]


def analyses() -> list[AnalysisEntry]:
    """Every registered analysis, in run order."""
    return list(_ANALYSES.values())


def listed_analyses() -> tuple[str, ...]:
    """The names a study file may list under ``analyses:``."""
    return tuple(e.name for e in _ANALYSES.values() if e.trigger == "listed")


_SUITE = "medprobe.analysis.suite"
_LAYERS = "medprobe.analysis.layer_suite"
_TEXT = "medprobe.analysis.text_side"
for _entry in (
    AnalysisEntry(
        "data", f"{_SUITE}:data_counts", "images in the dataset, used, skipped", trigger="always"
    ),
    AnalysisEntry(
        "warning",
        f"{_SUITE}:split_warnings",
        "warnings when a test split has fewer than 2 classes or a class under 5 images",
        trigger="always",
    ),
    AnalysisEntry(
        "separability",
        f"{_SUITE}:separability",
        "silhouette, Davies-Bouldin, Calinski-Harabasz, Fisher ratio, k-means NMI/ARI",
    ),
    AnalysisEntry("knn", f"{_SUITE}:knn", "cosine kNN probe for several k"),
    AnalysisEntry("linear_probe", f"{_SUITE}:linear_probe", "logistic-regression probe"),
    AnalysisEntry("few_shot", f"{_SUITE}:few_shot", "logistic regression on k images per class"),
    AnalysisEntry(
        "zero_shot", f"{_SUITE}:zero_shot", "zero-shot with prompt ensembles", needs_text=True
    ),
    AnalysisEntry(
        "geometry",
        f"{_SUITE}:geometry",
        "effective rank, intrinsic dimension, anisotropy, modality gap",
    ),
    AnalysisEntry(
        "similarity",
        f"{_SUITE}:similarity",
        "unbiased linear CKA and mutual-kNN alignment between models",
        scope="dataset",
    ),
    AnalysisEntry("overlay", f"{_SUITE}:overlay", "text-overlay bias probe", trigger="overlays"),
    AnalysisEntry(
        "layers",
        f"{_LAYERS}:layer_probes",
        "separability, kNN and linear probes per layer; best layer vs final (paired)",
        trigger="layers",
    ),
    AnalysisEntry(
        "layer_similarity",
        f"{_LAYERS}:layer_similarity",
        "layer x layer unbiased linear CKA of every pair of models, each with itself",
        scope="dataset",
        trigger="layers",
    ),
    # The text side: vision-only encoders get a "no text tower" row from each (so not
    # needs_text, which would skip them silently).
    AnalysisEntry(
        "prompt_sensitivity",
        f"{_TEXT}:prompt_sensitivity",
        "zero-shot balanced accuracy per prompt template and class-name variant, with spreads",
    ),
    AnalysisEntry(
        "terminology",
        f"{_TEXT}:terminology",
        "zero-shot with expert vs lay class names, paired difference",
    ),
    AnalysisEntry(
        "text_share",
        f"{_TEXT}:text_share",
        "text-addressable share (zero-shot vs linear probe above chance), class-text geometry",
    ),
):
    register_analysis(_entry)
