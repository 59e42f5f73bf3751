"""Does a model use the burned-in text? Its features with and without the detected text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medprobe.analysis.overlay_bias import per_image_displacement, probe_shift
from medprobe.analysis.stats import Estimate, bootstrap
from medprobe.audit.detect import TextDetections
from medprobe.audit.mask import MaskMode, TextMask
from medprobe.datasets.base import Dataset
from medprobe.encoders.base import Encoder
from medprobe.errors import MedprobeError
from medprobe.features import extract


def text_reliance(
    encoder: Encoder,
    dataset: Dataset,
    detections: TextDetections,
    *,
    mask: MaskMode = "fill",
    cache: str | Path | Any = None,
    seed: int = 0,
    n_resamples: int = 1000,
    batch_size: int = 32,
    show_progress: bool = False,
) -> dict[str, Estimate]:
    """Features of the original images vs the same images with the detected words and marks
    masked (:class:`~medprobe.audit.mask.TextMask`).

    - ``displacement``: original-vs-masked cosine distance over the between-class distance,
      averaged over the images that have text or marks (the others do not change);
    - ``{knn,linear}_accuracy_{original,masked}``: probes trained and tested on the original
      images, and trained and tested on the masked images (same splits); ``..._drop`` the
      paired difference on the same test images. Retraining (rather than testing an
      original-trained probe on masked images) keeps the mask's own look from counting as
      reliance: with text unrelated to the label, nothing is lost;
    - ``{knn,linear}_fraction_lost``: drop / (original accuracy - majority-class accuracy),
      the share of the probe's above-prior accuracy that disappears with the text.
    """
    if detections.dataset != dataset.name:
        raise MedprobeError(
            f"detections are of dataset {detections.dataset!r}, not {dataset.name!r}"
        )
    boot = {"n_resamples": n_resamples, "seed": seed}
    options = {"cache": cache, "batch_size": batch_size, "show_progress": show_progress}
    original = extract(encoder, dataset, **options)
    eraser = TextMask(detections, mask)
    masked = extract(encoder, dataset, overlay=eraser, **options)
    scores: dict[str, Estimate] = {}
    with_text = np.array([bool(eraser.boxes_of(i)) for i in original.ids])
    if with_text.any():
        moved = per_image_displacement(original, masked, seed)[with_text]
        labels = original.labels[with_text]
        scores["displacement"] = bootstrap(lambda idx: moved[idx].mean(axis=1), labels, **boot)
    shift, predictions = probe_shift(
        original,
        masked,
        seed=seed,
        names=("original", "masked"),
        retrain=True,
    )
    scores.update(shift)
    y = original.split("test").labels
    prior = np.bincount(y).max() / len(y)
    for probe, (before, after) in predictions.items():
        right_before, right_after = (before == y).astype(float), (after == y).astype(float)

        def lost(idx: np.ndarray, a=right_before, b=right_after) -> np.ndarray:
            above = a[idx].mean(axis=1) - prior
            drop = a[idx].mean(axis=1) - b[idx].mean(axis=1)
            return np.where(above > 1e-9, drop / np.maximum(above, 1e-9), np.nan)

        scores[f"{probe}_fraction_lost"] = bootstrap(lost, y, **boot)
    return scores
