"""The base of every analyser: scikit-learn style parameters, declared once.

Analysers are dataclasses over :class:`sklearn.base.BaseEstimator`: parameters are the fields
(so ``get_params``, ``clone`` and the repr come from scikit-learn), ``fit`` returns ``self``,
fitted attributes end in ``_``. The shared interval parameters (jackknife blocks, confidence,
seed) are keyword-only fields here, so a subclass declares only its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from sklearn.base import BaseEstimator

from medprobe.analysis.stats import jackknife_blocks, stratified_subsample
from medprobe.features.featureset import FeatureSet

#: The decorator every analyser class takes (scikit-learn supplies repr; identity equality).
analyser = dataclass(repr=False, eq=False)


@dataclass(kw_only=True, repr=False, eq=False)
class Analyser(BaseEstimator):
    """Jackknife blocks, confidence level of the intervals, and the seed of everything."""

    n_blocks: int = 30
    confidence: float = 0.95
    seed: int = 0

    def _blocks(self, fs) -> np.ndarray:
        """The delete-a-group jackknife block of every image (whole groups per block)."""
        return jackknife_blocks(fs.labels, fs.groups, self.n_blocks, self.seed)


@dataclass(kw_only=True, repr=False, eq=False)
class BootstrapAnalyser(Analyser):
    """An analyser whose intervals come from ``n_resamples`` stratified bootstrap resamples
    (statistics that are not means of per-image scores, such as spreads over prompts)."""

    n_resamples: int = 1000


@dataclass(kw_only=True, repr=False, eq=False)
class SubsampledAnalyser(Analyser):
    """An analyser whose quadratic measures work on at most ``max_samples`` images (a
    stratified, seeded subsample; ``subsampled_`` says whether it was smaller than the data,
    and the result rows then carry ``max_samples``)."""

    max_samples: int = 5_000

    def _subsample(self, fs) -> FeatureSet:
        """The subsample, its features float64 (copied after indexing: never the whole
        matrix)."""
        keep = stratified_subsample(fs.labels, self.max_samples, self.seed)
        self.subsampled_ = len(keep) < len(fs)
        sub = fs.subset(keep)
        return replace(sub, features=np.asarray(sub.features, dtype=np.float64))
