"""The synthetic lesion testbed: labelled images with known ground truth, fully offline.

Every image is a pure function of ``(config, index)``: same config and index, same pixels, on
any machine. Labels alternate (exactly balanced classes); the split is drawn from its own
random stream so changing a nuisance never moves an image between splits.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medprobe.datasets import synth_render as render
from medprobe.datasets.base import Dataset, Record
from medprobe.overlay import OverlaySpec, TextOverlay

Kind = Literal["dermoscopy", "ultrasound"]
TextMode = Literal["none", "independent", "label", "correlated"]

#: Class separation of the named difficulty levels (1 = classes far apart, 0 = no signal).
DIFFICULTY = {"easy": 0.8, "medium": 0.45, "hard": 0.2, "none": 0.0}

CLASS_NAMES = ("benign", "malignant")
MODALITY = {"dermoscopy": "dermoscopy", "ultrasound": "breast ultrasound"}
PROMPTS = {
    "dermoscopy": (
        "a dermoscopy image of a {} skin lesion.",
        "a dermatoscopic photo of a {} lesion.",
    ),
    "ultrasound": (
        "an ultrasound image of a {} breast lesion.",
        "a breast ultrasound showing a {} mass.",
    ),
}
_RENDER: dict[str, Callable[[np.random.Generator, float, int], np.ndarray]] = {
    "dermoscopy": render.render_dermoscopy,
    "ultrasound": render.render_ultrasound,
}
# Independent random streams per (seed, index): one per decision, so they never interact.
_STREAM_LABEL_NOISE, _STREAM_SPLIT, _STREAM_IMAGE, _STREAM_NUISANCE, _STREAM_TEXT = range(5)


class TextNuisance(BaseModel):
    """Burned-in text and how its content relates to the label.

    - ``none``: no text.
    - ``independent``: a random word from ``vocabulary`` (default: the class names), unrelated to
      the label.
    - ``label``: the true class name.
    - ``correlated``: in the train split, the true class name with probability ``correlation``
      (else another class name); in val/test splits, independent. This is a planted shortcut.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: TextMode = "none"
    probability: float = Field(1.0, ge=0, le=1)
    correlation: float = Field(0.95, ge=0, le=1)
    vocabulary: tuple[str, ...] = CLASS_NAMES
    height_fraction: float = Field(0.14, gt=0, le=0.5)

    @model_validator(mode="after")
    def _vocabulary_not_empty(self) -> TextNuisance:
        if self.mode != "none" and not any(w.strip() for w in self.vocabulary):
            raise ValueError("text vocabulary is empty")
        return self


class SyntheticConfig(BaseModel):
    """Everything that determines the testbed's images."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "dermoscopy"
    n: int = Field(200, gt=0)
    size: int = Field(128, ge=32, le=2048)
    separation: float = Field(DIFFICULTY["easy"], ge=0, le=1)
    seed: int = 0
    test_fraction: float = Field(0.3, gt=0, lt=1)
    hair: float = Field(0.3, ge=0, le=1)
    ruler: float = Field(0.15, ge=0, le=1)
    vignetting: float = Field(0.3, ge=0, le=1)
    colour_cast: float = Field(0.3, ge=0, le=1)
    text: TextNuisance = TextNuisance()


@dataclass(frozen=True)
class ImagePlan:
    """The cheap decisions about one image, made before any pixel is drawn."""

    label: int
    split: str
    severity: float
    text: str


def _rng(config: SyntheticConfig, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, index, stream])


def plan_image(config: SyntheticConfig, index: int) -> ImagePlan:
    """Label, split, latent severity and burned-in text of image ``index``."""
    label = index % len(CLASS_NAMES)
    split = (
        "test" if _rng(config, index, _STREAM_SPLIT).random() < config.test_fraction else "train"
    )
    noise = _rng(config, index, _STREAM_LABEL_NOISE).normal(0, 0.12)
    # With separation 0 the severity distribution is the same for both classes: no signal.
    severity = float(np.clip(0.5 + (label - 0.5) * config.separation + noise, 0, 1))
    return ImagePlan(label, split, severity, _plan_text(config, index, label, split))


def _plan_text(config: SyntheticConfig, index: int, label: int, split: str) -> str:
    text = config.text
    rng = _rng(config, index, _STREAM_TEXT)
    if text.mode == "none" or rng.random() >= text.probability:
        return ""
    words = [w for w in text.vocabulary if w.strip()]
    true_name = CLASS_NAMES[label]
    if text.mode == "label" or (
        text.mode == "correlated" and split == "train" and rng.random() < text.correlation
    ):
        return true_name
    if text.mode == "correlated" and split == "train":
        return str(rng.choice([c for c in CLASS_NAMES if c != true_name]))
    return str(rng.choice(words))


def render_image(config: SyntheticConfig, index: int) -> tuple[Image.Image, ImagePlan]:
    """The RGB image of ``index`` and the plan it was drawn from."""
    plan = plan_image(config, index)
    image = _RENDER[config.kind](_rng(config, index, _STREAM_IMAGE), plan.severity, config.size)
    rng = _rng(config, index, _STREAM_NUISANCE)
    draws = rng.random(4)  # drawn up front so each nuisance's probability is independent
    canvas = Image.fromarray((image * 255).round().astype(np.uint8))
    if config.kind == "dermoscopy" and draws[0] < config.hair:
        render.draw_hair(rng, canvas)
    if draws[1] < config.ruler:
        render.draw_ruler(rng, canvas)
    pixels = np.asarray(canvas, dtype=np.float64) / 255
    if draws[2] < config.colour_cast:
        pixels = render.add_colour_cast(rng, pixels)
    if draws[3] < config.vignetting:
        pixels = render.add_vignetting(rng, pixels)
    canvas = Image.fromarray((pixels * 255).round().astype(np.uint8))
    if plan.text:
        corner = ("top-left", "top-right", "bottom-left", "bottom-right")[int(rng.integers(4))]
        spec = OverlaySpec(
            source="fixed",
            text=plan.text,
            position=corner,
            margin=0.0,
            size=config.text.height_fraction,
        )
        canvas = TextOverlay(spec, CLASS_NAMES).draw(canvas, plan.text, index)[0]
    return canvas, plan


class SyntheticDataset(Dataset):
    """The testbed as a :class:`Dataset`; images are rendered on demand."""

    def __init__(self, config: SyntheticConfig, name: str | None = None) -> None:
        self.config = config
        records = []
        for index in range(config.n):
            plan = plan_image(config, index)
            records.append(
                Record(
                    id=f"{config.kind}-{index:06d}",
                    label=plan.label,
                    split=plan.split,
                    source=index,
                    meta={"severity": plan.severity, "text": plan.text},
                )
            )
        super().__init__(
            name=name or f"synthetic-{config.kind}",
            modality=MODALITY[config.kind],
            class_names=CLASS_NAMES,
            records=records,
            prompts=PROMPTS[config.kind],
        )

    def load_image(self, record: Record, reduce_to: int | None = None) -> Image.Image:
        return render_image(self.config, int(record.source))[0]

    def image_content(self) -> Any:
        # Images are a pure function of the config (and the renderer's code version).
        return ["synthetic-v1", self.config.model_dump(mode="json")]


def synthetic(
    kind: Kind = "dermoscopy",
    n: int = 200,
    *,
    difficulty: str | float = "easy",
    name: str | None = None,
    **options: object,
) -> SyntheticDataset:
    """The synthetic testbed as a dataset.

    ``difficulty`` is ``"easy"``, ``"medium"``, ``"hard"``, ``"none"`` (labels independent of the
    image) or a class separation in [0, 1]. Other options are :class:`SyntheticConfig` fields,
    e.g. ``size=128, seed=0, hair=0.3, text=TextNuisance(mode="label")``.
    """
    return SyntheticDataset(synthetic_config(kind, n, difficulty=difficulty, **options), name=name)


def synthetic_config(
    kind: Kind = "dermoscopy", n: int = 200, *, difficulty: str | float = "easy", **options: object
) -> SyntheticConfig:
    """The :class:`SyntheticConfig` that :func:`synthetic` builds (validated, not rendered)."""
    if isinstance(difficulty, str) and difficulty not in DIFFICULTY:
        raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTY)} or a number in [0, 1]")
    separation = DIFFICULTY[difficulty] if isinstance(difficulty, str) else float(difficulty)
    return SyntheticConfig(kind=kind, n=n, separation=separation, **options)


def write_image_folder(
    dataset: SyntheticDataset, out: Path, progress: Callable[[int], None] | None = None
) -> Path:
    """Write ``out/<class>/<id>.png`` plus ``out/manifest.csv``; returns the manifest path."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "severity", "text"])
        for record in dataset:
            label = dataset.class_names[record.label]
            path = Path(label) / f"{record.id}.png"
            (out / label).mkdir(exist_ok=True)
            dataset.load_image(record).save(out / path)
            writer.writerow(
                [
                    path.as_posix(),
                    label,
                    record.split,
                    f"{record.meta['severity']:.4f}",
                    record.meta["text"],
                ]
            )
            if progress is not None:
                progress(1)
    return manifest
