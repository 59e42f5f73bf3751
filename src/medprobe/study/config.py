"""The study file: a pydantic-validated YAML that names models, datasets and analyses."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

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
from medprobe.audit.detector import TextDetector
from medprobe.audit.leakage import PERMUTATIONS
from medprobe.audit.registry import DEFAULT_DETECTOR, create_detector
from medprobe.datasets import source_names
from medprobe.datasets.synthetic import synthetic_config
from medprobe.datasets.vocabulary import TermsOverride
from medprobe.errors import MedprobeError
from medprobe.overlay.spec import OverlaySpec

BUNDLED = ("demo", "paper-2601.14774")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: ``auto`` (the GPU when one is visible), ``cpu``, ``cuda`` or ``cuda:N``.
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
Precision = Literal["fp32", "bf16", "fp16"]


class EveryLayers(_Strict):
    """``layers: {every: N}``: every N-th block (the last one included) and ``final``."""

    every: int = Field(gt=0)


#: ``layers:`` ``all``, a list of layer names (``medprobe layers MODEL``), or ``{every: N}``
Layers = Literal["all"] | list[str] | EveryLayers


def layer_selection(layers: Layers | None) -> str | list[str] | dict[str, int] | None:
    """A ``layers:`` value as :func:`medprobe.encoders.layers.select_taps` takes it."""
    return layers.model_dump() if isinstance(layers, EveryLayers) else layers


class ModelEntry(_Strict):
    """A zoo name (or ``local:/path``), optionally with local weights or a pinned revision, and
    its own ``device`` / ``precision`` (default: the study's) and ``layers`` (default: the
    study's)."""

    name: str
    weights: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    domain: Literal["medical", "general", "baseline", "unknown"] = "unknown"
    device: Device | None = None
    precision: Precision | None = None
    layers: Layers | None = None


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
    vocabulary: dict[str, TermsOverride] | None = Field(
        None, description="class name -> {expert:, lay:, synonyms:} (over the bundled names)"
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
            "vocabulary": (
                {k: v.model_dump(exclude_none=True) for k, v in self.vocabulary.items()}
                if self.vocabulary
                else None
            ),
        }


class TextAuditConfig(_Strict):
    """``text_audit:`` the burned-in text audit of every dataset: prevalence of words and marks
    and leakage per dataset, and (``reliance``) each model's features with the detected words
    and marks masked. ``detector`` is a registered text detector (``rapidocr``,
    ``easyocr-craft``) and ``settings`` its fields, e.g.
    ``{min_confidence: 0.9, marks: null}``. ``permutations`` bounds the leakage's
    label-permutation test: its smallest p-value is ``1 / (permutations + 1)``."""

    detector: str = DEFAULT_DETECTOR
    settings: dict[str, Any] = {}
    mask: Literal["fill", "inpaint"] = "fill"
    reliance: bool = True
    permutations: int = Field(PERMUTATIONS, gt=0)

    @model_validator(mode="after")
    def _detector_exists(self) -> TextAuditConfig:
        try:
            self.build()
        except MedprobeError as exc:
            raise ValueError(str(exc)) from None
        return self

    def build(self) -> TextDetector:
        """The configured detector (its settings validated; no model is loaded)."""
        return create_detector(self.detector, **self.settings)


class LinearProbeConfig(_Strict):
    """``linear_probe:`` which protocol(s) the linear probe follows: ``medprobe`` (standardised
    features, balanced class weights, C by balanced accuracy) and/or ``clip_benchmark``
    (L2-normalised features, no class weights, C by accuracy on a validation split)."""

    protocol: (
        Literal["medprobe", "clip_benchmark"] | list[Literal["medprobe", "clip_benchmark"]]
    ) = "medprobe"

    def protocols(self) -> tuple[str, ...]:
        chosen = [self.protocol] if isinstance(self.protocol, str) else self.protocol
        return tuple(dict.fromkeys(chosen)) or ("medprobe",)


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
    linear_probe: LinearProbeConfig = LinearProbeConfig()
    overlays: list[OverlaySpec] = []
    text_audit: TextAuditConfig | None = None
    cache: str | None = None
    engine: Literal["local", "ray"] = "local"
    device: Device = "auto"
    precision: Precision = Field(
        "fp32", description="every model's precision, where it applies (baselines: fp32)"
    )
    batch_size: int = Field(32, gt=0)
    layers: Layers | None = Field(
        None, description="layers every model is analysed at besides final (layer-wise section)"
    )
    layer_dtype: Literal["float16", "float32"] = Field(
        "float16", description="storage of the block layers' features (final: float32)"
    )
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

    def with_overrides(
        self, *, device: str | None = None, precision: str | None = None
    ) -> StudyConfig:
        """The same study with the study-level device / precision replaced (CLI options), each
        validated like the file's own."""
        changes = {k: v for k, v in (("device", device), ("precision", precision)) if v}
        if not changes:
            return self
        try:
            return StudyConfig.model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise MedprobeError(f"--{first['loc'][0]}: {first['msg']}") from None

    def with_model_options(
        self, *, trust_remote_code: list[str], revisions: dict[str, str]
    ) -> StudyConfig:
        """The same study with remote code allowed for, and revisions pinned on, the named
        models (CLI ``--trust-remote-code MODEL`` / ``--revision MODEL=SHA``); a name that is
        not one of the study's models is an error."""
        from medprobe.encoders import get_spec

        def canonical(name: str) -> str:
            return name if name.startswith("local:") else get_spec(name).name

        wanted = {canonical(n): "trust" for n in trust_remote_code}
        pins = {canonical(n): rev for n, rev in revisions.items()}
        mine = {canonical(m.name) for m in self.models}
        unknown = sorted((set(wanted) | set(pins)) - mine)
        if unknown:
            raise MedprobeError(
                f"{', '.join(unknown)} not in study {self.name!r} (its models: "
                f"{', '.join(m.name for m in self.models)})"
            )
        models = []
        for model in self.models:
            name = canonical(model.name)
            update: dict[str, Any] = {}
            if name in wanted:
                update["trust_remote_code"] = True
            if name in pins:
                update["revision"] = pins[name]
            models.append(model.model_copy(update=update))
        return self.model_copy(update={"models": models})

    def resolve(self, path: str) -> Path:
        """A path from the study file, relative to the study file's folder."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate


def bundled_text(name: str) -> str:
    """The YAML of a bundled study."""
    if name not in BUNDLED:
        raise MedprobeError(f"no bundled study {name!r}; bundled studies: {', '.join(BUNDLED)}")
    return resources.files("medprobe.configs").joinpath(f"{name}.yaml").read_text()


def copy_bundled(name: str, folder: Path, *, force: bool = False) -> Path:
    """Write the bundled study ``name`` to ``folder/name.yaml`` (an editable copy)."""
    target = folder / f"{name}.yaml"
    if target.exists() and not force:
        raise MedprobeError(f"{target} exists; pass --force to overwrite it")
    header = (
        f"# Copied from medprobe's bundled study {name!r}. Relative paths are relative to this\n"
        "# file's folder (or to --data-root). Pin revisions, set weights: folders, allow remote\n"
        "# code (trust_remote_code: true) per model here.\n"
    )
    target.write_text(header + bundled_text(name))
    return target


def load_config(source: str | Path) -> StudyConfig:
    """A study from a YAML file, or a bundled one by name (``demo``, ``paper-2601.14774``)."""
    if str(source) in BUNDLED:
        text = bundled_text(str(source))
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
