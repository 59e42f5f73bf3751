"""The whole text audit of one dataset: detection, prevalence, leakage, reliance per model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from medprobe.analysis.registry import AnalysisEntry, register_analysis
from medprobe.analysis.rows import Row, RowContext
from medprobe.analysis.stats import Estimate
from medprobe.analysis.suite import UnitInput
from medprobe.audit.boxes import TextBox
from medprobe.audit.detect import TextDetections, detect_text
from medprobe.audit.detector import TextDetector
from medprobe.audit.leakage import PERMUTATIONS, TextLeakage, text_prevalence, token_table
from medprobe.audit.mask import MaskMode
from medprobe.audit.reliance import text_reliance
from medprobe.datasets.base import Dataset
from medprobe.encoders.base import Encoder

OCR = "(ocr)"  # the encoder column of dataset-level audit rows: the OCR is the "model"
WORD_COLOUR, MARK_COLOUR = (255, 40, 40), (0, 200, 255)  # boxes drawn in the report


@dataclass
class TextAudit:
    """Detections, per-class prevalence of words and of marks, frequent tokens, leakage and
    per-model reliance."""

    dataset: Dataset
    detections: TextDetections
    prevalence: dict[str, Estimate]
    tokens: pd.DataFrame
    leakage: TextLeakage | None
    mask: MaskMode = "fill"
    mark_prevalence: dict[str, Estimate] = field(default_factory=dict)
    reliance: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    #: encoder name -> the row context of its reliance rows
    contexts: dict[str, RowContext] = field(default_factory=dict)

    @property
    def detector(self) -> str:
        """The detector's registry name."""
        return str(self.detections.detector.get("detector", ""))

    def dataset_rows(self, seed: int = 0) -> list[Row]:
        """``text_audit`` rows (params: the detector): per class (params: class) the share of
        images with words and with marks and the number of each, then leakage."""
        context = RowContext(
            encoder=OCR,
            dataset=self.dataset.name,
            seed=seed,
            modality=self.dataset.modality,
            encoder_revision=self.detections.detector_label,
            dataset_fingerprint=self.dataset.fingerprint(),
        )
        params = {"detector": self.detector}
        labels = self.detections.labels
        names = self.detections.class_names
        groups = {"all": np.ones(len(labels), bool)} | {n: labels == k for k, n in enumerate(names)}
        words, marks = self.detections.counts("word"), self.detections.counts("mark")
        rows = []
        for group, members in groups.items():
            n = int(members.sum())
            scores = {
                "text_prevalence": self.prevalence[group],
                "mark_prevalence": self.mark_prevalence.get(group),
                "words": Estimate.exact(float(words[members].sum()), n),
                "marks": Estimate.exact(float(marks[members].sum()), n),
            }
            scores = {m: e for m, e in scores.items() if e is not None}
            rows += context.rows("text_audit", scores, params={**params, "class": group})
        if self.leakage is not None:
            rows += context.rows("text_audit", self.leakage.scores(), params=params)
        return rows

    def reliance_rows(self, encoder: str) -> list[Row]:
        """``text_reliance`` rows of one measured encoder (params: mask mode, detector)."""
        scores, params = self.reliance[encoder], {"mask": self.mask, "detector": self.detector}
        # displacement: images with text (all splits); probes: the test split
        moved = {m: e for m, e in scores.items() if m == "displacement"}
        probed = {m: e for m, e in scores.items() if m != "displacement"}
        context = self.contexts[encoder]
        return context.rows("text_reliance", moved, params=params) + context.rows(
            "text_reliance", probed, split="test", params=params
        )

    def rows(self, seed: int = 0) -> list[Row]:
        """All result-table rows: the dataset's, then every measured encoder's."""
        return self.dataset_rows(seed) + [
            row for name in self.reliance for row in self.reliance_rows(name)
        ]

    def measure(self, encoder: Encoder, *, seed: int = 0, **options: Any) -> dict[str, Estimate]:
        """Measure ``encoder``'s reliance on the detected text (:func:`text_reliance`
        ``options``: cache, n_resamples, batch_size, show_progress) and keep it."""
        scores = text_reliance(
            encoder, self.dataset, self.detections, mask=self.mask, seed=seed, **options
        )
        self.reliance[encoder.name] = scores
        self.contexts[encoder.name] = RowContext.of(encoder, self.dataset, seed)
        return scores

    def examples(self, count: int = 8) -> list[tuple[Image.Image, str]]:
        """Images with their detections drawn (words red, marks blue; rotated boxes as found),
        with captions: images with words or marks first, taking classes in turn, then images
        without either."""
        position = {r.id: k for k, r in enumerate(self.dataset.records)}
        found = self.detections.has_text | self.detections.has_marks
        labels = self.detections.labels
        order: list[int] = []
        for k in range(len(self.detections.class_names)):
            order += np.flatnonzero(found & (labels == k))[: count // 2].tolist()
        order = sorted(order)[:count]
        order += np.flatnonzero(~found)[: max(0, count - len(order))].tolist()
        examples = []
        for i in order:
            record = self.dataset.records[position[self.detections.ids[i]]]
            image = self.dataset.load_image(record).convert("RGB")
            boxes = self.detections.boxes[i]
            examples.append(
                (
                    draw_boxes(image, boxes),
                    f"{self.detections.class_names[record.label]}: {caption(boxes)}",
                )
            )
        return examples


def draw_boxes(image: Image.Image, boxes: Sequence[TextBox]) -> Image.Image:
    """``image`` with every box outlined: words red, marks blue, rotated boxes as quads."""
    draw = ImageDraw.Draw(image)
    line = max(1, round(max(image.size) / 200))
    for box in boxes:
        colour = WORD_COLOUR if box.kind == "word" else MARK_COLOUR
        if box.quad:
            draw.polygon([tuple(p) for p in box.quad], outline=colour, width=line)
        else:
            draw.rectangle(
                (box.x, box.y, box.x + box.width - 1, box.y + box.height - 1),
                outline=colour,
                width=line,
            )
    return image


def caption(boxes: Sequence[TextBox]) -> str:
    """The words read (with the orientation when not upright, "?" when unreadable) and the
    marks found, e.g. ``"L (mirrored), DAY 6; marks: colour x2"``."""
    words = [
        (b.text or "?") + ("" if b.orientation == "upright" else f" ({b.orientation})")
        for b in boxes
        if b.kind == "word"
    ]
    marks = Counter(b.text for b in boxes if b.kind == "mark")
    text = ", ".join(words) or "no text"
    if marks:
        text += "; marks: " + ", ".join(f"{m} x{n}" if n > 1 else m for m, n in marks.items())
    return text


def audit_text(
    dataset: Dataset,
    encoders: Sequence[Encoder] = (),
    *,
    detector: TextDetector | None = None,
    mask: MaskMode = "fill",
    cache: Any = None,
    seed: int = 0,
    n_resamples: int = 1000,
    permutations: int = PERMUTATIONS,
    batch_size: int = 32,
    show_progress: bool = False,
) -> TextAudit:
    """Audit ``dataset`` for burned-in text and marks (``detector``: default
    :func:`~medprobe.audit.registry.create_detector`'s) and, for each encoder, measure its
    reliance on them. ``cache`` (a folder or a :class:`~medprobe.features.FeatureStore`)
    keeps the detections, the leakage fit and the features, each by content. ``permutations``
    bounds the leakage's label-permutation test (:class:`~medprobe.audit.leakage.TextLeakage`):
    its smallest p-value is ``1 / (permutations + 1)``."""
    detections = detect_text(dataset, detector, cache=cache, show_progress=show_progress)
    leakage = TextLeakage(n_resamples=n_resamples, n_permutations=permutations, seed=seed)
    leakage.fit(detections, cache)
    audit = TextAudit(
        dataset,
        detections,
        text_prevalence(detections),
        token_table(detections),
        leakage,
        mask,
        text_prevalence(detections, kind="mark"),
    )
    for encoder in encoders:
        audit.measure(
            encoder,
            cache=cache,
            seed=seed,
            n_resamples=n_resamples,
            batch_size=batch_size,
            show_progress=show_progress,
        )
    return audit


def reliance_analysis(unit: UnitInput) -> list[Row]:
    """Features with the dataset's detected burned-in text and marks masked vs original."""
    audit = unit.text_audit
    if audit is None:  # the dataset's audit failed; its error row says why
        return []
    audit.measure(unit.encoder, cache=unit.store, seed=unit.seed, batch_size=unit.batch_size)
    return audit.reliance_rows(unit.encoder.name)


register_analysis(
    AnalysisEntry(
        "text_reliance",
        "medprobe.audit.run:reliance_analysis",
        "features with the detected burned-in text and marks masked vs original",
        trigger="text_audit",
    )
)
