"""The whole text audit of one dataset: detection, prevalence, leakage, reliance per model."""

from __future__ import annotations

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
from medprobe.audit.detect import TextDetections, TextDetector, detect_text
from medprobe.audit.leakage import TextLeakage, text_prevalence, token_table
from medprobe.audit.mask import MaskMode
from medprobe.audit.reliance import text_reliance
from medprobe.datasets.base import Dataset
from medprobe.encoders.base import Encoder

OCR = "(ocr)"  # the encoder column of dataset-level audit rows: the OCR is the "model"


@dataclass
class TextAudit:
    """Detections, per-class prevalence, frequent tokens, leakage and per-model reliance."""

    dataset: Dataset
    detections: TextDetections
    prevalence: dict[str, Estimate]
    tokens: pd.DataFrame
    leakage: TextLeakage | None
    mask: MaskMode = "fill"
    reliance: dict[str, dict[str, Estimate]] = field(default_factory=dict)
    #: encoder name -> the row context of its reliance rows
    contexts: dict[str, RowContext] = field(default_factory=dict)

    def dataset_rows(self, seed: int = 0) -> list[Row]:
        """``text_audit`` rows: prevalence per class (params = class) and leakage."""
        context = RowContext(
            encoder=OCR,
            dataset=self.dataset.name,
            seed=seed,
            modality=self.dataset.modality,
            encoder_revision=f"tesseract {self.detections.detector.get('tesseract', '')}",
            dataset_fingerprint=self.dataset.fingerprint(),
        )
        rows = []
        for group, estimate in self.prevalence.items():
            scores = {"text_prevalence": estimate}
            rows += context.rows("text_audit", scores, params={"class": group})
        if self.leakage is not None:
            rows += context.rows("text_audit", self.leakage.scores())
        return rows

    def reliance_rows(self, encoder: str) -> list[Row]:
        """``text_reliance`` rows of one measured encoder (params = the mask mode)."""
        scores, params = self.reliance[encoder], {"mask": self.mask}
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
        """Images with their detected words boxed, with captions: images with text first,
        taking classes in turn, then images without text."""
        position = {r.id: k for k, r in enumerate(self.dataset.records)}
        has_text, labels = self.detections.has_text, self.detections.labels
        order: list[int] = []
        for k in range(len(self.detections.class_names)):
            order += np.flatnonzero(has_text & (labels == k))[: count // 2].tolist()
        order = sorted(order)[:count]
        order += np.flatnonzero(~has_text)[: max(0, count - len(order))].tolist()
        examples = []
        for i in order:
            record = self.dataset.records[position[self.detections.ids[i]]]
            image = self.dataset.load_image(record).convert("RGB")
            draw = ImageDraw.Draw(image)
            line = max(1, round(max(image.size) / 200))
            for box in self.detections.boxes[i]:
                draw.rectangle(
                    (box.x, box.y, box.x + box.width, box.y + box.height),
                    outline=(255, 40, 40),
                    width=line,
                )
            words = " ".join(b.text for b in self.detections.boxes[i]) or "no text"
            examples.append((image, f"{self.detections.class_names[record.label]}: {words}"))
        return examples


def audit_text(
    dataset: Dataset,
    encoders: Sequence[Encoder] = (),
    *,
    detector: TextDetector | None = None,
    mask: MaskMode = "fill",
    cache: Any = None,
    seed: int = 0,
    n_resamples: int = 1000,
    batch_size: int = 32,
    show_progress: bool = False,
) -> TextAudit:
    """Audit ``dataset`` for burned-in text and, for each encoder, measure its reliance on it."""
    detections = detect_text(dataset, detector, cache=cache, show_progress=show_progress)
    leakage = TextLeakage(n_resamples=n_resamples, seed=seed).fit(detections)
    audit = TextAudit(
        dataset, detections, text_prevalence(detections), token_table(detections), leakage, mask
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
    """Features with the dataset's detected burned-in text masked vs original."""
    audit = unit.text_audit
    if audit is None:  # the dataset's audit failed; its error row says why
        return []
    audit.measure(unit.encoder, cache=unit.store, seed=unit.seed, batch_size=unit.batch_size)
    return audit.reliance_rows(unit.encoder.name)


register_analysis(
    AnalysisEntry(
        "text_reliance",
        "medprobe.audit.run:reliance_analysis",
        "features with the detected burned-in text masked vs original",
        trigger="text_audit",
    )
)
