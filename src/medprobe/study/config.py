"""The study file: a pydantic-validated YAML that names models, datasets and analyses."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from medprobe.analysis.registry import listed_analyses
from medprobe.datasets import source_names
from medprobe.datasets.synthetic import synthetic_config
from medprobe.errors import MedprobeError
from medprobe.overlay.spec import OverlaySpec

BUNDLED = ("demo", "paper-2601.14774")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    """A zoo name (or ``local:/path``), optionally with local weights or a pinned revision."""

    name: str
    weights: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    domain: Literal["medical", "general", "baseline", "unknown"] = "unknown"


class DatasetEntry(_Strict):
    """Exactly one source: ``path`` (class folders), ``manifest``, ``medmnist``, ``webdataset``,
    ``hf_dataset`` or ``synthetic``.

    Relative paths are relative to the study file.
    """

    name: str
    path: str | None = None
    manifest: str | None = None
    medmnist: str | None = None
    webdataset: str | None = Field(None, description="tar shards, e.g. shards/{000..099}.tar")
    hf_dataset: dict[str, Any] | None = Field(
        None, description="{path: saved dataset or parquet, split:, image: image, label: label}"
    )
    synthetic: dict[str, Any] | None = None
    modality: str | None = None
    where: dict[str, str] | None = None
    mode: Literal["resize", "pad"] | None = None
    prompts: list[str] | None = None
    group_column: str | None = Field(
        None, description="patient / lesion column: splits and intervals respect it"
    )
    fingerprint: Literal["stat", "content"] | None = Field(
        None, description="how images are identified: stat (path, size, mtime) or content"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DatasetEntry:
        sources = [s for s in source_names() if getattr(self, s, None) is not None]
        if len(sources) != 1:
            raise ValueError(
                f"dataset {self.name!r} needs exactly one of {', '.join(source_names())}"
            )
        return self

    @field_validator("synthetic")
    @classmethod
    def _synthetic_options(cls, options: dict[str, Any] | None) -> dict[str, Any] | None:
        if options is not None:
            try:
                synthetic_config(**options)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"synthetic option {where}: {first['msg']}") from None
            except TypeError as exc:
                raise ValueError(f"synthetic options: {exc}") from None
        return options

    def source(self) -> tuple[str, Any]:
        """The dataset source (a :func:`medprobe.datasets.open_source` kind) and its value."""
        kind = next(s for s in source_names() if getattr(self, s, None) is not None)
        return kind, getattr(self, kind)

    def options(self) -> dict[str, Any]:
        """What the entry says besides its source (left out: what it does not say)."""
        return {
            "name": self.name,
            "modality": self.modality,
            "prompts": self.prompts,
            "where": self.where,
            "mode": self.mode,
            "group_column": self.group_column,
            "fingerprint_mode": self.fingerprint,
        }


class TextAuditConfig(_Strict):
    """``text_audit:`` the burned-in text audit of every dataset (needs ``tesseract-ocr``):
    prevalence and leakage per dataset, and (``reliance``) each model's features with the
    detected text masked."""

    mask: Literal["fill", "inpaint"] = "fill"
    min_confidence: float = Field(85, ge=0, le=100)
    reliance: bool = True


class MlflowConfig(_Strict):
    """``mlflow:`` log the finished study to MLflow (``pip install "medprobe[mlflow]"``): the
    config as params, the key metrics with their CIs, results.csv / report.html / run.json as
    artifacts."""

    tracking_uri: str | None = Field(
        None,
        description="e.g. sqlite:///mlflow.db or http://host:5000 (default: MLflow's, "
        "$MLFLOW_TRACKING_URI or sqlite:///mlflow.db in the current folder)",
    )
    experiment: str | None = Field(None, description="default: the study's name")
    run_name: str | None = Field(None, description="default: the study's name")
    artifact_location: str | None = Field(
        None, description="where a new experiment keeps artifacts (default: MLflow's)"
    )


class StudyConfig(_Strict):
    """A whole study: every model on every dataset, every analysis."""

    name: str
    description: str = ""
    seed: int = 0
    models: list[ModelEntry] = Field(min_length=1)
    datasets: list[DatasetEntry] = Field(min_length=1)
    analyses: list[str] = Field(default_factory=lambda: list(listed_analyses()))
    embeddings: list[Literal["pca", "tsne", "umap"]] = ["pca"]
    overlays: list[OverlaySpec] = []
    text_audit: TextAuditConfig | None = None
    cache: str | None = None
    engine: Literal["local", "ray"] = "local"
    batch_size: int = Field(32, gt=0)
    thumbnails: int = Field(3000, ge=0, description="hover thumbnails per dataset in the report")
    mlflow: MlflowConfig | None = None
    base_dir: str = "."

    @field_validator("models", "datasets")
    @classmethod
    def _unique_names(cls, entries: list) -> list:
        names = [e.name for e in entries]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"names must be unique; used more than once: {', '.join(map(repr, twice))}"
            )
        return entries

    @field_validator("analyses")
    @classmethod
    def _known_analyses(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in listed_analyses()]
        if unknown:
            raise ValueError(
                f"unknown analysis {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(listed_analyses())}"
            )
        return names

    @model_validator(mode="before")
    @classmethod
    def _models_as_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            data = {
                **data,
                "models": [{"name": m} if isinstance(m, str) else m for m in data["models"]],
            }
        return data

    def resolve(self, path: str) -> Path:
        """A path from the study file, relative to the study file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate


def load_config(source: str | Path) -> StudyConfig:
    """A study from a YAML file, or a bundled one by name (``demo``, ``paper-2601.14774``)."""
    if str(source) in BUNDLED:
        text = resources.files("medprobe.configs").joinpath(f"{source}.yaml").read_text()
        base = Path.cwd()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise MedprobeError(
                f"study file {path} does not exist (bundled studies: {', '.join(BUNDLED)})"
            )
        text, base = path.read_text(), path.parent
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MedprobeError(f"{source} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise MedprobeError(f"{source} must be a YAML mapping with models and datasets")
    try:
        return StudyConfig.model_validate({**data, "base_dir": str(data.get("base_dir", base))})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise MedprobeError(f"{source}: {where}: {message}") from None
