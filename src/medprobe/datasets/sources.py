"""Dataset sources by name (``path``, ``manifest``, ``medmnist``, ``synthetic``): one registry
that study files, the CLI and :func:`open_dataset` all open datasets through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medprobe.datasets.base import Dataset
from medprobe.datasets.files import folder_manifest, image_folder, manifest
from medprobe.datasets.hf import hf_dataset
from medprobe.datasets.medmnist import medmnist
from medprobe.datasets.shards import webdataset
from medprobe.datasets.synthetic import synthetic
from medprobe.errors import MedprobeError

#: What every file-backed source takes besides its path.
DESCRIBED = ("name", "modality", "prompts")
#: ... and what file sources (folders, manifests) take as well.
FILES = (*DESCRIBED, "fingerprint_mode")


@dataclass(frozen=True)
class DatasetSource:
    """A kind of dataset: how to open it from the value a study file gives (a path, or options
    for generated data), which options it takes, whether the study's seed draws its splits, and
    which file shapes :func:`open_dataset` recognises as it."""

    name: str
    open: Callable[..., Dataset]
    options: tuple[str, ...] = DESCRIBED
    takes_path: bool = True
    uses_seed: bool = True
    suffixes: tuple[str, ...] = ()
    is_folder: bool = False


_SOURCES: dict[str, DatasetSource] = {}


def register_source(name: str, **declared: Any) -> Callable[[Callable], Callable]:
    """Decorator: register ``opener(value, **options) -> Dataset`` as source ``name``."""

    def decorate(opener: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _SOURCES[name] = DatasetSource(name, opener, **declared)
        return opener

    return decorate


def source_names() -> tuple[str, ...]:
    return tuple(_SOURCES)


@register_source("path", options=(*FILES, "group_column"), is_folder=True)
def _folder(value: Path, *, group_column: str | None = None, **options: Any) -> Dataset:
    """Class folders; a folder that carries a manifest (e.g. ``medprobe synth`` output) is
    opened through it, so its splits and columns are kept (``listing`` says so)."""
    listed = folder_manifest(value) if value.is_dir() else None
    if listed is not None:
        return manifest(listed, group_column=group_column, **options)
    if group_column is not None:
        raise MedprobeError(
            f"{value}: class folders have no {group_column!r} column; give a manifest with it"
        )
    return image_folder(value, **{**options, "modality": options.get("modality") or "unknown"})


register_source(
    "manifest",
    options=(*FILES, "where", "group_column"),
    suffixes=(".csv", ".parquet", ".pq"),
)(manifest)
# MedMNIST ships its own splits: the seed has nothing to choose.
register_source("medmnist", options=(*DESCRIBED, "mode"), uses_seed=False, suffixes=(".npz",))(
    medmnist
)


register_source("webdataset", options=(*FILES, "group_column", "class_names"), suffixes=(".tar",))(
    webdataset
)


@register_source("hf_dataset", options=(*DESCRIBED, "group_column"), takes_path=False)
def _hf(value: dict[str, Any] | str, **options: Any) -> Dataset:
    """``{path: ..., split: ..., image: image, label: label}`` (or just the path)."""
    spec = {"path": value} if isinstance(value, str | Path) else dict(value)
    if "path" not in spec:
        raise MedprobeError("an hf_dataset entry needs a path (a save_to_disk folder or Parquet)")
    unknown = sorted(set(spec) - {"path", "split", "image", "label"})
    if unknown:
        raise MedprobeError(f"an hf_dataset takes path, split, image, label; not {unknown}")
    return hf_dataset(Path(spec.pop("path")).expanduser(), **spec, **options)


@register_source("synthetic", options=("name",), takes_path=False, uses_seed=False)
def _synthetic(value: dict[str, Any], *, name: str | None = None) -> Dataset:
    # The testbed's own ``seed`` option fixes its images; the study seed does not change them.
    options = dict(value)
    return synthetic(
        options.pop("kind", "dermoscopy"),
        options.pop("n", 200),
        difficulty=options.pop("difficulty", "easy"),
        name=name,
        **options,
    )


def open_source(
    kind: str,
    value: Any,
    *,
    seed: int = 0,
    vocabulary: dict[str, Any] | None = None,
    **options: Any,
) -> Dataset:
    """The dataset of source ``kind``; ``seed`` draws generated splits where the source has
    none of its own; options left as None are not passed. ``vocabulary`` (class name ->
    expert / lay names) applies to every kind of source."""
    dataset = _open(kind, value, seed, options)
    if vocabulary:
        dataset.vocabulary = vocabulary
    return dataset


def _open(kind: str, value: Any, seed: int, options: dict[str, Any]) -> Dataset:
    if kind not in _SOURCES:
        raise MedprobeError(
            f"unknown dataset source {kind!r}; known sources: {', '.join(_SOURCES)}"
        )
    source = _SOURCES[kind]
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(source.options))
    if unknown:
        raise MedprobeError(f"a {kind} dataset takes no option {', '.join(unknown)}")
    if source.uses_seed:
        given["seed"] = seed
    return source.open(Path(value).expanduser() if source.takes_path else value, **given)


def open_dataset(path: str | Path, *, modality: str | None = None, **options: Any) -> Dataset:
    """A folder of class folders, a ``.csv``/``.parquet`` manifest, or a MedMNIST ``.npz``."""
    path = Path(path).expanduser()
    for source in _SOURCES.values():
        if (source.is_folder and path.is_dir()) or path.suffix.lower() in source.suffixes:
            return open_source(source.name, path, modality=modality, **options)
    if not path.exists():
        raise MedprobeError(f"dataset path {path} does not exist")
    shapes = [s.name for s in _SOURCES.values() if s.takes_path]
    raise MedprobeError(
        f"cannot tell what kind of dataset {path} is ({', '.join(shapes)}): give a folder of "
        "class folders, a .csv/.parquet manifest or a MedMNIST .npz"
    )
