"""Analyses over FeatureSets: small estimators with ``fit`` and fitted ``*_`` attributes, and
the registry of the study's analyses.

Imported lazily (PEP 562): the registry is light, the estimators pull in scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AnalysisEntry": "medprobe.analysis.registry",
    "analyses": "medprobe.analysis.registry",
    "get_analysis": "medprobe.analysis.registry",
    "listed_analyses": "medprobe.analysis.registry",
    "register_analysis": "medprobe.analysis.registry",
    "CrossModel": "medprobe.analysis.similarity",
    "linear_cka": "medprobe.analysis.similarity",
    "mutual_knn": "medprobe.analysis.similarity",
    "Embedding2D": "medprobe.analysis.embedding",
    "Estimate": "medprobe.analysis.stats",
    "bootstrap": "medprobe.analysis.stats",
    "holm": "medprobe.analysis.stats",
    "paired_difference": "medprobe.analysis.stats",
    "FewShotProbe": "medprobe.analysis.probes",
    "KNNProbe": "medprobe.analysis.probes",
    "LinearProbe": "medprobe.analysis.probes",
    "classification_scores": "medprobe.analysis.scores",
    "Geometry": "medprobe.analysis.geometry",
    "Separability": "medprobe.analysis.separability",
    "ZeroShot": "medprobe.analysis.zeroshot",
}
__all__ = [
    "AnalysisEntry",
    "CrossModel",
    "Embedding2D",
    "Estimate",
    "FewShotProbe",
    "Geometry",
    "KNNProbe",
    "LinearProbe",
    "Separability",
    "ZeroShot",
    "analyses",
    "bootstrap",
    "classification_scores",
    "get_analysis",
    "holm",
    "linear_cka",
    "listed_analyses",
    "mutual_knn",
    "paired_difference",
    "register_analysis",
]

if TYPE_CHECKING:
    from medprobe.analysis.embedding import Embedding2D
    from medprobe.analysis.geometry import Geometry
    from medprobe.analysis.probes import FewShotProbe, KNNProbe, LinearProbe
    from medprobe.analysis.registry import (
        AnalysisEntry,
        analyses,
        get_analysis,
        listed_analyses,
        register_analysis,
    )
    from medprobe.analysis.scores import classification_scores
    from medprobe.analysis.separability import Separability
    from medprobe.analysis.similarity import CrossModel, linear_cka, mutual_knn
    from medprobe.analysis.stats import Estimate, bootstrap, holm, paired_difference
    from medprobe.analysis.zeroshot import ZeroShot


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medprobe.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
