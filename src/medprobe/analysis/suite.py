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
from medprobe.analysis.probes import (
    FewShotProbe,
    KNNProbe,
    LinearProbe,
    Neighbours,
    search_neighbours,
)
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
    #: linear-probe protocols to run (``medprobe``, ``clip_benchmark``); the first one's test
    #: predictions are kept for paired comparisons
    protocols: Sequence[str] = ("medprobe",)
    #: filled by analyses that keep per-image predictions (paired model comparisons)
    predictions: dict[str, Any] = field(default_factory=dict)
    #: the features of every layer the study reads (tap name -> FeatureSet, ``final``
    #: included), empty when the study reads the final embedding only
    layers: dict[str, FeatureSet] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.context.seed

    @cached_property
    def neighbours(self) -> Neighbours | None:
        """The unit's one neighbour search (test images' nearest training images), shared by
        every k of the kNN probe and by mutual kNN; None without train and test splits."""
        splits = self.features.splits
        if not ((splits == "train").any() and (splits == "test").any()):
            return None
        return search_neighbours(self.features, max(KNN_KS), seed=self.seed)

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


#: a test class with fewer images than this gets a warning row
MIN_TEST_IMAGES = 5


def split_warnings(unit: UnitInput) -> list[Row]:
    """Warning rows when the test split cannot support its scores: fewer than two classes
    (balanced accuracy is then one recall, AUROC undefined) or a class with fewer than
    ``MIN_TEST_IMAGES`` images (its recall rests on a handful)."""
    fs = unit.features
    test = fs.labels[fs.splits == "test"]
    if len(test) == 0:
        return []
    rows = []
    present = np.unique(test)
    if len(present) < 2:
        rows.append(
            unit.context.warning(
                "test_classes",
                len(present),
                f"the test split of {fs.dataset!r} holds only {len(present)} class; its "
                "probe scores are not comparable with other datasets'",
            )
        )
    counts = np.bincount(test, minlength=len(fs.class_names))
    for c in present:
        if counts[c] < MIN_TEST_IMAGES:
            name = fs.class_names[c]
            rows.append(
                unit.context.warning(
                    "test_class_images",
                    int(counts[c]),
                    f"class {name!r} has {int(counts[c])} test images (fewer than "
                    f"{MIN_TEST_IMAGES}); its recall, and every score, is uncertain",
                    params={"class": name},
                )
            )
    return rows


def _subsample_params(analyser) -> dict[str, int]:
    return {"max_samples": analyser.max_samples} if analyser.subsampled_ else {}


def separability(unit: UnitInput) -> list[Row]:
    """Davies-Bouldin, Calinski-Harabasz, Fisher ratio on every image; silhouettes and
    k-means NMI/ARI on a subsample (``max_samples`` in their rows when it is smaller)."""
    sep = Separability(seed=unit.seed).fit(unit.features)
    on_all = ("davies_bouldin", "calinski_harabasz", "fisher_ratio")
    return unit.context.rows(
        "separability", {m: e for m, e in sep.scores_.items() if m in on_all}
    ) + unit.context.rows(
        "separability",
        {m: e for m, e in sep.scores_.items() if m not in on_all},
        params=_subsample_params(sep),
    )


def knn(unit: UnitInput) -> list[Row]:
    """Cosine kNN probe for each k in KNN_KS, from one neighbour search."""
    rows = []
    for k in KNN_KS:
        probe = KNNProbe(k=k, seed=unit.seed).fit(unit.features, unit.neighbours)
        params = {"k": k, "metric": "cosine", **_subsample_params(probe)}
        rows += unit.context.rows("knn", probe.scores_, split="test", params=params)
    return rows


def linear_probe(unit: UnitInput) -> list[Row]:
    """Logistic-regression probe for each of the unit's protocols; keeps the first protocol's
    test predictions for paired comparisons."""
    return fitted_linear_probes(unit)[0]


def fitted_linear_probes(unit: UnitInput) -> tuple[list[Row], list[LinearProbe]]:
    """:func:`linear_probe`'s rows and its fitted probes, one per protocol."""
    fs = unit.features
    rows, probes = [], []
    for protocol in unit.protocols:
        linear = LinearProbe(protocol=protocol, seed=unit.seed).fit(fs)
        probes.append(linear)
        if not unit.predictions:
            test = fs.split("test")
            unit.predictions.update(
                ids=test.ids.tolist(),
                y_true=linear.y_true_.tolist(),
                y_pred=linear.y_pred_.tolist(),
                n_classes=len(fs.class_names),
                protocol=protocol,
                groups=None if test.groups is None else test.groups.tolist(),
            )
        rows += unit.context.rows(
            "linear_probe",
            linear.scores_,
            split="test",
            params={"protocol": protocol},
            selected={"C": linear.C_},
        )
    return rows, probes


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
    """Effective rank, intrinsic dimension (on a subsample), anisotropy; modality gap for
    VLMs."""
    geo = Geometry(seed=unit.seed).fit(unit.features, unit.class_text)
    twonn = "intrinsic_dimension_twonn"
    return unit.context.rows(
        "geometry", {m: e for m, e in geo.scores_.items() if m != twonn}
    ) + unit.context.rows("geometry", {twonn: geo.scores_[twonn]}, params=_subsample_params(geo))


def similarity(group: DatasetInput) -> list[Row]:
    """Unbiased linear CKA (jackknife CI) and mutual-kNN alignment (no CI: see
    :mod:`medprobe.analysis.similarity`; on a subsample, ``max_samples`` in its rows when
    smaller) between every pair of models."""
    if len(group.units) < 2:
        return []
    found = [u.neighbours for u in group.units]
    cross = CrossModel(seed=group.seed).fit(
        [u.features for u in group.units], None if None in found else found
    )
    mutual_params = {"max_samples": cross.max_samples} if cross.mutual_subsampled_ else {}
    rows = []
    for i, unit in enumerate(group.units):
        n = len(unit.features)
        for j, other in enumerate(group.units):
            if i == j:
                continue
            b = other.encoder.name
            cka = Estimate(cross.cka_[i, j], cross.cka_low_[i, j], cross.cka_high_[i, j], n)
            mutual = Estimate.without_interval(cross.mutual_knn_[i, j], cross.n_mutual_)
            rows += unit.context.rows("similarity", {"linear_cka_unbiased": cka}, encoder_b=b)
            rows += unit.context.rows(
                "similarity", {"mutual_knn_k10": mutual}, encoder_b=b, params=mutual_params
            )
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
