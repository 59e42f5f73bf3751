"""The text-overlay bias probe: how much do words written on an image move a model's features?

For one encoder, one dataset and one overlay:

- **displacement**: cosine distance between each image's clean and overlaid features, divided
  by the typical cosine distance between clean images of different classes (so models are
  comparable: 1.0 means the text moved the image as far as changing its diagnosis would);
- **probe robustness**: kNN and linear probes trained on clean features, tested on overlaid
  test images, next to the same probes tested clean (the drop is a paired difference);
- **typographic attack** (``wrong_class`` overlays, vision-language models): how often
  zero-shot predicts the written (wrong) class, and how often the prediction flips;
- **text readability** (``random_word`` overlays): balanced accuracy of a linear probe that
  decodes which word was written, against chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medprobe.analysis.probes import KNNProbe, LinearProbe
from medprobe.analysis.scores import classification_scores
from medprobe.analysis.stats import (
    Estimate,
    PairedDifference,
    mean_estimate,
    paired_difference,
    proportion,
)
from medprobe.analysis.zeroshot import ZeroShot, unit_rows
from medprobe.datasets.base import Dataset
from medprobe.encoders.base import Encoder
from medprobe.errors import MedprobeError
from medprobe.features import FeatureSet, extract
from medprobe.overlay import OverlaySpec, TextOverlay


@dataclass
class OverlayResult:
    """One encoder x dataset x overlay: metric name -> Estimate, plus the texts written."""

    encoder: str
    dataset: str
    overlay: OverlaySpec
    scores: dict[str, Estimate] = field(default_factory=dict)
    #: per-image normalised displacement, with the image ids, labels and groups (paired
    #: comparisons)
    displacements: np.ndarray | None = None
    ids: np.ndarray | None = None
    labels: np.ndarray | None = None
    groups: np.ndarray | None = None


def _aligned(clean: FeatureSet, over: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    if list(clean.ids) != list(over.ids):
        raise MedprobeError("clean and overlaid features cover different images")
    return np.asarray(clean.features, dtype=np.float64), np.asarray(over.features, dtype=np.float64)


def between_class_distance(
    x: np.ndarray, labels: np.ndarray, seed: int = 0, pairs: int = 20000
) -> float:
    """Mean cosine distance between random pairs of images of different classes."""
    rng = np.random.default_rng(seed)
    u = unit_rows(x)
    a, b = rng.integers(0, len(u), pairs), rng.integers(0, len(u), pairs)
    keep = labels[a] != labels[b]
    return float(np.mean(1 - np.einsum("ij,ij->i", u[a[keep]], u[b[keep]])))


def per_image_displacement(clean: FeatureSet, over: FeatureSet, seed: int = 0) -> np.ndarray:
    """Each image's clean-vs-overlaid cosine distance / the between-class distance."""
    x, y = _aligned(clean, over)
    per_image = 1 - np.einsum("ij,ij->i", unit_rows(x), unit_rows(y))
    return per_image / between_class_distance(x, clean.labels, seed)


def displacement(clean: FeatureSet, over: FeatureSet, *, seed: int = 0) -> Estimate:
    """Mean normalised displacement (:func:`per_image_displacement`) with a t interval
    (cluster-robust standard error): a mean of per-image values, conditional on the
    between-class distance it is normalised by (estimated from 20,000 pairs)."""
    return mean_estimate(per_image_displacement(clean, over, seed), clean.groups)


def compare_displacement(a: OverlayResult, b: OverlayResult, *, seed: int = 0) -> PairedDifference:
    """Mean displacement, model ``a`` minus model ``b``, on the same images with the same
    overlay (paired Wald CI, sign-flip p-value): the per-model text-sensitivity comparison."""
    if a.overlay != b.overlay or a.ids is None or b.ids is None or set(a.ids) != set(b.ids):
        raise MedprobeError("compare overlay results of one overlay on the same images")
    position = {image: i for i, image in enumerate(b.ids)}
    da, db = a.displacements, b.displacements[[position[i] for i in a.ids]]
    return paired_difference(da, db, a.labels, a.groups, seed=seed)


def _probe_on_overlaid(probe, clean: FeatureSet, over: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """Fit on clean train features; return (clean test scores, overlaid test scores)."""
    probe.fit(clean)
    clean_scores = probe.y_score_
    model_input = over.split("test")
    if hasattr(probe, "model_"):  # linear probe: reuse the fitted pipeline
        proba = probe.model_.predict_proba(model_input.features)
    else:
        from sklearn.neighbors import KNeighborsClassifier

        train = clean.split("train")
        knn = KNeighborsClassifier(
            n_neighbors=min(probe.k, len(train)), metric=probe.metric, algorithm="brute"
        ).fit(train.features, train.labels)
        proba = knn.predict_proba(model_input.features)
    over_scores = np.zeros_like(clean_scores)
    over_scores[:, np.unique(clean.labels[clean.splits == "train"])] = proba
    return clean_scores, over_scores


def probe_shift(
    clean: FeatureSet,
    shifted: FeatureSet,
    *,
    seed: int = 0,
    names: tuple[str, str] = ("clean", "overlaid"),
    retrain: bool = False,
) -> tuple[dict[str, Estimate], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """kNN and linear probes trained on ``clean`` train features and tested on the same test
    images clean and ``shifted`` (overlaid, masked, ...): ``{probe}_accuracy_{name}`` for both,
    and ``{probe}_accuracy_drop``, the paired difference. With ``retrain``, the shifted probe
    is trained on the shifted train features instead (what the features support without the
    shift, rather than how a clean-trained probe transfers). Also returns each probe's test
    predictions (clean, shifted) for further paired statistics."""
    tested = clean.split("test")
    y, groups = tested.labels, tested.groups
    scores: dict[str, Estimate] = {}
    predictions = {}
    probes = {  # every test image scored: the predictions pair with the test split
        "knn": lambda: KNNProbe(k=10, seed=seed, max_samples=len(clean)),
        "linear": lambda: LinearProbe(seed=seed),
    }
    for probe_name, make in probes.items():
        if retrain:
            clean_scores, shifted_scores = make().fit(clean).y_score_, make().fit(shifted).y_score_
        else:
            clean_scores, shifted_scores = _probe_on_overlaid(make(), clean, shifted)
        for name, proba in zip(names, (clean_scores, shifted_scores), strict=True):
            scores[f"{probe_name}_accuracy_{name}"] = classification_scores(
                y, proba, groups=groups
            )["accuracy"]
        before, after = clean_scores.argmax(1), shifted_scores.argmax(1)
        drop = paired_difference(before == y, after == y, y, groups, seed=seed)
        scores[f"{probe_name}_accuracy_drop"] = drop.estimate()
        predictions[probe_name] = (before, after)
    return scores, predictions


def overlay_bias(
    encoder: Encoder,
    dataset: Dataset,
    overlays: list[OverlaySpec] | None = None,
    *,
    cache: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 32,
    show_progress: bool = False,
) -> list[OverlayResult]:
    """Run the probe for each overlay (default: a wrong class name and a random word)."""
    overlays = overlays or [OverlaySpec(source="wrong_class"), OverlaySpec(source="random_word")]
    every = extract(
        encoder, dataset, cache=cache, batch_size=batch_size, show_progress=show_progress
    )
    results = []
    for spec in overlays:
        overlay = TextOverlay(spec, dataset.class_names)
        over = extract(
            encoder,
            dataset,
            overlay=overlay,
            cache=cache,
            batch_size=batch_size,
            show_progress=show_progress,
        )
        # images the text does not fit are skipped (with their reason) in the overlaid set
        clean = every.subset(np.isin(every.ids, over.ids)) if len(over) < len(every) else every
        result = OverlayResult(encoder.name, dataset.name, spec)
        result.displacements = per_image_displacement(clean, over, seed)
        result.ids, result.labels, result.groups = np.asarray(clean.ids), clean.labels, clean.groups
        result.scores["displacement"] = mean_estimate(result.displacements, clean.groups)
        result.scores.update(probe_shift(clean, over, seed=seed)[0])
        if spec.source == "wrong_class" and encoder.has_text:
            result.scores.update(_typographic_attack(encoder, dataset, clean, over, overlay, seed))
        if spec.source == "random_word":
            result.scores["text_readability"] = _readability(dataset, over, overlay, seed)
        results.append(result)
    return results


def _typographic_attack(encoder, dataset, clean, over, overlay, seed):
    test_index = {r.id: i for i, r in enumerate(dataset.records)}
    zero_clean = ZeroShot(encoder, seed=seed).fit(clean)
    zero_over = ZeroShot(encoder, seed=seed).fit(over)
    tested = clean.split("test") if (clean.splits == "test").any() else clean
    written = np.array(
        [
            dataset.class_names.index(
                overlay.text_for(dataset.records[test_index[i]], test_index[i])
            )
            for i in tested.ids
        ]
    )
    success = (zero_over.y_pred_ == written).astype(float)
    flips = (zero_over.y_pred_ != zero_clean.y_pred_).astype(float)
    return {
        "attack_success": proportion(success, tested.groups),
        "zero_shot_flip_rate": proportion(flips, tested.groups),
        "zero_shot_accuracy_clean": zero_clean.scores_["accuracy"],
        "zero_shot_accuracy_overlaid": zero_over.scores_["accuracy"],
    }


def _readability(dataset: Dataset, over: FeatureSet, overlay: TextOverlay, seed: int) -> Estimate:
    """Balanced accuracy of decoding the written word from overlaid features (chance 1/W)."""
    index = {r.id: i for i, r in enumerate(dataset.records)}
    words = overlay.candidate_texts()
    word_of = np.array(
        [words.index(overlay.text_for(dataset.records[index[i]], index[i])) for i in over.ids]
    )
    relabelled = FeatureSet(
        over.features,
        word_of,
        over.ids,
        over.splits,
        words,
        over.encoder,
        over.dataset,
        groups=over.groups,
    )
    return LinearProbe(seed=seed).fit(relabelled).scores_["balanced_accuracy"]


def shortcut_reliance(
    encoder: Encoder,
    *,
    kind: str = "dermoscopy",
    n: int = 400,
    difficulty: str = "hard",
    seed: int = 0,
    cache: str | Path | None = None,
    size: int = 128,
) -> dict[str, Estimate]:
    """On the synthetic testbed: a linear probe trained where the burned-in text equals the
    label, tested where it still does (``accuracy_shortcut_present``) and where it is
    independent of the label (``accuracy_shortcut_removed``); ``reliance`` is the paired drop.
    The lesions are identical in all three sets; only the text differs.
    """
    from medprobe.datasets import TextNuisance, synthetic

    def make(mode: str):
        return synthetic(
            kind,
            n,
            difficulty=difficulty,
            seed=seed,
            size=size,
            text=TextNuisance(mode=mode, correlation=1.0),
            name=f"synthetic-{kind}-{mode}",
        )

    train = extract(encoder, make("correlated"), cache=cache, show_progress=False)
    present = extract(encoder, make("label"), cache=cache, show_progress=False)
    removed = extract(encoder, make("independent"), cache=cache, show_progress=False)
    probe = LinearProbe(seed=seed).fit(train)
    y = present.labels[present.splits == "test"]
    scores = {}
    predictions = {}
    for name, fs in (("present", present), ("removed", removed)):
        proba = probe.model_.predict_proba(fs.split("test").features)
        predictions[name] = proba.argmax(axis=1)
        scores[f"accuracy_shortcut_{name}"] = classification_scores(y, proba)["accuracy"]
    drop = paired_difference(predictions["present"] == y, predictions["removed"] == y, y, seed=seed)
    scores["reliance"] = drop.estimate()
    return scores
