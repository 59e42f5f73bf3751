"""The base of every analyser: scikit-learn style parameters, declared once.

Analysers are dataclasses over :class:`sklearn.base.BaseEstimator`: parameters are the fields
(so ``get_params``, ``clone`` and the repr come from scikit-learn), ``fit`` returns ``self``,
fitted attributes end in ``_``. The shared bootstrap parameters are keyword-only fields here,
so a subclass declares only its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from medprobe.analysis.stats import stratified_subsample

#: The decorator every analyser class takes (scikit-learn supplies repr; identity equality).
analyser = dataclass(repr=False, eq=False)


@dataclass(kw_only=True, repr=False, eq=False)
class Analyser(BaseEstimator):
    """Bootstrap resamples, confidence level of the intervals, and the seed of everything."""

    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def _boot(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~medprobe.analysis.stats.bootstrap`."""
        return {"n_resamples": self.n_resamples, "confidence": self.confidence, "seed": self.seed}


@dataclass(kw_only=True, repr=False, eq=False)
class SubsampledAnalyser(Analyser):
    """An analyser that works on at most ``max_samples`` images (a stratified, seeded
    subsample: some measures are quadratic in the number of images)."""

    n_resamples: int = 200
    max_samples: int = 10_000

    def _subsample(self, fs) -> tuple[np.ndarray, np.ndarray]:
        """float64 features and labels of the subsample."""
        keep = stratified_subsample(fs.labels, self.max_samples, self.seed)
        return np.asarray(fs.features, dtype=np.float64)[keep], fs.labels[keep]
