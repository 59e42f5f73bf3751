"""Analyses over FeatureSets: small estimators with ``fit`` and fitted ``*_`` attributes."""

from medprobe.analysis.embedding import Embedding2D
from medprobe.analysis.geometry import Geometry
from medprobe.analysis.probes import FewShotProbe, KNNProbe, LinearProbe, classification_scores
from medprobe.analysis.separability import Separability
from medprobe.analysis.similarity import CrossModel, linear_cka, mutual_knn
from medprobe.analysis.stats import Estimate, bootstrap, holm, paired_bootstrap
from medprobe.analysis.zeroshot import ZeroShot

__all__ = [
    "CrossModel",
    "Embedding2D",
    "Estimate",
    "FewShotProbe",
    "Geometry",
    "KNNProbe",
    "LinearProbe",
    "Separability",
    "ZeroShot",
    "bootstrap",
    "classification_scores",
    "holm",
    "linear_cka",
    "mutual_knn",
    "paired_bootstrap",
]
