"""Analyses over FeatureSets: small estimators with ``fit`` and fitted ``*_`` attributes."""

from medprobe.analysis.embedding import Embedding2D
from medprobe.analysis.probes import KNNProbe, LinearProbe, classification_scores
from medprobe.analysis.separability import Separability
from medprobe.analysis.stats import Estimate, bootstrap

__all__ = [
    "Embedding2D",
    "Estimate",
    "KNNProbe",
    "LinearProbe",
    "Separability",
    "bootstrap",
    "classification_scores",
]
