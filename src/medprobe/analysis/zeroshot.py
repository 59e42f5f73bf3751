"""Zero-shot classification with prompt ensembles (CLIP's protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

import numpy as np

from medprobe.analysis.base import Analyser, analyser
from medprobe.analysis.scores import classification_scores
from medprobe.analysis.stats import chunks
from medprobe.datasets.prompts import fill
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet
from medprobe.features.text_store import TextEmbeddings

if TYPE_CHECKING:
    from medprobe.encoders.base import Encoder


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def class_text_embeddings(
    encoder: Encoder, class_names: Sequence[str], templates: Sequence[str]
) -> np.ndarray:
    """``[K, D]``: per class, the mean of its L2-normalised prompt embeddings, re-normalised
    (each prompt encoded once per process: the text-side analyses share the embeddings)."""
    rows = []
    for name in class_names:
        texts = [fill(t, name) for t in templates]
        rows.append(unit_rows(TextEmbeddings().encode(encoder, texts)).mean(axis=0))
    return unit_rows(np.stack(rows))


@analyser
class ZeroShot(Analyser):
    """Classify by cosine similarity between images and class prompt ensembles.

    ``templates`` default to the dataset's (from the FeatureSet's provenance). Scored on the test
    split when there is one (comparable with the probes), else on every image.
    """

    encoder: Encoder
    templates: Sequence[str] | None = None

    def fit(self, fs: FeatureSet) -> Self:
        fs.check_finite()
        if not self.encoder.has_text:
            raise MedprobeError(f"zero-shot needs a text encoder; {self.encoder.name} has none")
        templates = list(self.templates or fs.meta.get("prompts") or ["a photo of {}."])
        is_test = fs.splits == "test"
        rows = np.flatnonzero(is_test) if is_test.any() else np.arange(len(fs))
        self.text_embeddings_ = class_text_embeddings(self.encoder, fs.class_names, templates)
        # row chunks: a float64 copy of every evaluated image would be N x D x 8 bytes
        self.logits_ = np.concatenate(
            [
                100.0 * unit_rows(fs.features[rows[part]]) @ self.text_embeddings_.T
                for part in chunks(len(rows))
            ]
            or [np.zeros((0, len(fs.class_names)))]
        )
        shifted = np.exp(self.logits_ - self.logits_.max(axis=1, keepdims=True))
        self.y_score_ = shifted / shifted.sum(axis=1, keepdims=True)
        self.y_true_ = fs.labels[rows]
        self.y_pred_ = self.logits_.argmax(axis=1)
        groups = None if fs.groups is None else fs.groups[rows]
        self.scores_ = classification_scores(
            self.y_true_, self.y_score_, groups=groups, confidence=self.confidence
        )
        return self
