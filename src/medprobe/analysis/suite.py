"""The study's analyses (the functions the registry's entries name): each turns one unit's
features into result rows.

Each is a thin adapter: the analysers themselves are estimators in their own modules, usable
without a study.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from medprobe.analysis.geometry import Geometry
from medprobe.analysis.overlay_bias import OverlayResult, overlay_bias
from medprobe.analysis.probes import FewShotProbe, KNNProbe, LinearProbe
from medprobe.analysis.rows import Row, RowContext
from medprobe.analysis.separability import Separability
from medprobe.analysis.similarity import CrossModel
from medprobe.analysis.stats import Estimate
from medprobe.analysis.zeroshot import ZeroShot, class_text_embeddings

if TYPE_CHECKING:
    from medprobe.datasets.base import Dataset
    from medprobe.encoders.base import Encoder
    from medprobe.features.featureset import FeatureSet
    from medprobe.features.store import FeatureStore
    from medprobe.overlay.spec import OverlaySpec

KNN_KS = (1, 5, 10, 20)
FEW_SHOTS = (1, 2, 4, 8, 16)


@dataclass
class UnitInput:
    """What an analysis of one (encoder, dataset) pair gets."""

    features: FeatureSet
    encoder: Encoder
    dataset: Dataset
    context: RowContext
    store: FeatureStore | None = None
    batch_size: int = 32
    overlays: Sequence[OverlaySpec] = ()
    #: the dataset's text audit (:class:`~medprobe.audit.TextAudit`) when the study runs one
    text_audit: Any = None
    #: filled by analyses that keep per-image predictions (paired model comparisons)
    predictions: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.context.seed

    @cached_property
    def class_text(self) -> np.ndarray | None:
        """``[K, D]`` class prompt-ensemble embeddings (the dataset's prompts), or None for a
        vision-only encoder; computed once per unit."""
        if not self.encoder.has_text:
            return None
        return class_text_embeddings(self.encoder, self.dataset.class_names, self.dataset.prompts)


@dataclass
class DatasetInput:
    """What a cross-model analysis gets: every successful unit of one dataset."""

    dataset: str
    units: list[UnitInput]
    seed: int = 0


def data_counts(unit: UnitInput) -> list[Row]:
    """Images in the dataset, used, and skipped (unreadable)."""
    fs = unit.features
    total = len(fs) + len(fs.skipped)
    counts = {"n_images": total, "n_used": len(fs), "n_skipped": len(fs.skipped)}
    return unit.context.rows("data", {k: Estimate.exact(v, total) for k, v in counts.items()})


def separability(unit: UnitInput) -> list[Row]:
    """Silhouette, Davies-Bouldin, Calinski-Harabasz, Fisher ratio, k-means NMI/ARI."""
    scores = Separability(seed=unit.seed).fit(unit.features).scores_
    return unit.context.rows("separability", scores)


def knn(unit: UnitInput) -> list[Row]:
    """Cosine kNN probe for each k in KNN_KS."""
    rows = []
    for k in KNN_KS:
        scores = KNNProbe(k=k, seed=unit.seed).fit(unit.features).scores_
        rows += unit.context.rows("knn", scores, split="test", params={"k": k, "metric": "cosine"})
    return rows


def linear_probe(unit: UnitInput) -> list[Row]:
    """Logistic-regression probe; keeps its test predictions for paired comparisons."""
    fs = unit.features
    linear = LinearProbe(seed=unit.seed).fit(fs)
    unit.predictions.update(
        ids=fs.ids[fs.splits == "test"].tolist(),
        y_true=linear.y_true_.tolist(),
        y_pred=linear.y_pred_.tolist(),
        n_classes=len(fs.class_names),
    )
    return unit.context.rows(
        "linear_probe", linear.scores_, split="test", selected={"C": linear.C_}
    )


def few_shot(unit: UnitInput) -> list[Row]:
    """Few-shot logistic regression for each shot count the smallest class allows."""
    fs = unit.features
    train = fs.labels[fs.splits == "train"]
    smallest = int(np.bincount(train)[np.unique(train)].min()) if len(train) else 0
    shots = tuple(k for k in FEW_SHOTS if k <= smallest)
    if not shots:
        return []
    few = FewShotProbe(shots=shots, seed=unit.seed).fit(fs)
    rows = []
    for k in shots:
        params = {"shots": k, "draws": few.draws}
        rows += unit.context.rows("few_shot", few.scores_[k], split="test", params=params)
    return rows


def zero_shot(unit: UnitInput) -> list[Row]:
    """Zero-shot classification with the dataset's prompt ensemble."""
    zero = ZeroShot(unit.encoder, templates=unit.dataset.prompts, seed=unit.seed)
    scores = zero.fit(unit.features).scores_
    split = "test" if (unit.features.splits == "test").any() else "all"
    return unit.context.rows("zero_shot", scores, split=split, params={"prompts": "ensemble"})


def geometry(unit: UnitInput) -> list[Row]:
    """Effective rank, intrinsic dimension, anisotropy; modality gap for VLMs."""
    scores = Geometry(seed=unit.seed).fit(unit.features, unit.class_text).scores_
    return unit.context.rows("geometry", scores)


def similarity(group: DatasetInput) -> list[Row]:
    """Unbiased linear CKA and mutual-kNN alignment between every pair of models (no CI
    is computed for these (NaN), rather than claiming none is needed)."""
    if len(group.units) < 2:
        return []
    cross = CrossModel().fit([u.features for u in group.units])
    nan = float("nan")
    rows = []
    for i, unit in enumerate(group.units):
        n = len(unit.features)
        for j, other in enumerate(group.units):
            if i == j:
                continue
            scores = {
                "linear_cka_unbiased": Estimate(float(cross.cka_[i, j]), nan, nan, n),
                "mutual_knn_k10": Estimate(float(cross.mutual_knn_[i, j]), nan, nan, n),
            }
            rows += unit.context.rows("similarity", scores, encoder_b=other.encoder.name)
    return rows


def overlay(unit: UnitInput) -> list[Row]:
    """The text-overlay bias probe, one set of rows per overlay of the study."""
    results = overlay_bias(
        unit.encoder,
        unit.dataset,
        list(unit.overlays),
        cache=unit.store,
        seed=unit.seed,
        batch_size=unit.batch_size,
    )
    return [row for result in results for row in overlay_rows(unit.context, result)]


def overlay_rows(context: RowContext, result: OverlayResult) -> list[Row]:
    """One overlay's rows: displacement over every image, the rest on the test split."""
    params = {"overlay": result.overlay.label}
    everywhere = {m: e for m, e in result.scores.items() if m == "displacement"}
    tested = {m: e for m, e in result.scores.items() if m != "displacement"}
    return context.rows("overlay", everywhere, params=params) + context.rows(
        "overlay", tested, split="test", params=params
    )
