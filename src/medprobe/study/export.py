"""``medprobe export``: a finished study's embeddings for the viewers users already have.

A study run folder (the ``--out`` of ``medprobe run``) names, in its results table, the
feature-store key of every (model, dataset) pair it measured; its ``run.json`` holds the study
config, from which the datasets are reopened for their labels, splits, groups and images. Each
target (:data:`EXPORTERS`) writes those embeddings in a format its viewer reads natively:

- ``projector``: TensorBoard's embedding projector (``projector_config.pbtxt``, tensors and
  metadata as TSV, thumbnails as a sprite), readable without TensorFlow.
- ``fiftyone``: a FiftyOne ``FiftyOneImageClassificationDataset`` folder (images, labels,
  splits as tags, each model's embedding as a field), loaded by ``fo.Dataset.from_dir``.

Points are a stratified, seeded subsample (:func:`subsample`), the same images for every model
of a dataset, so the models' neighbourhoods can be compared point for point.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from medprobe._version import __version__
from medprobe.analysis.rows import read_results
from medprobe.atomic import atomic_write
from medprobe.datasets.base import Dataset, Record
from medprobe.datasets.files import FileDataset
from medprobe.datasets.splits import stratified_sample
from medprobe.errors import BadImageError, MedprobeError
from medprobe.features.store import DamagedEntryError, FeatureStore
from medprobe.fingerprint import fingerprint
from medprobe.names import slug
from medprobe.paths import default_cache_dir
from medprobe.study.config import StudyConfig
from medprobe.study.runner import open_datasets

#: The projector draws the sprite as one WebGL texture: browsers cap a side at 8192 px.
MAX_SPRITE_SIDE = 8192
#: Image files FiftyOne's App (a browser) shows as they are; others are written out as PNG.
BROWSER_IMAGES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}


@dataclass(frozen=True)
class ExportedModel:
    """One model's embedding of the exported points (rows aligned with the points)."""

    encoder: str
    domain: str
    feature_key: str
    embedding: np.ndarray


@dataclass(frozen=True)
class ExportedDataset:
    """The exported points of one dataset and every model's embedding of them."""

    dataset: Dataset
    points: list[Record]
    models: list[ExportedModel]
    #: images that every model has features of (the points are drawn from these)
    available: int
    seed: int

    @property
    def subsampled(self) -> bool:
        return len(self.points) < self.available

    def note(self) -> str:
        """One sentence on which images were exported."""
        if not self.subsampled:
            return f"all {self.available} images with features of every model"
        return (
            f"{len(self.points)} of {self.available} images, a subsample stratified by class "
            f"(seed {self.seed}), the same images for every model"
        )

    def group_header(self) -> str | None:
        """The column that names each image's group (patient, lesion), if the dataset has one."""
        column = self.dataset.group_column
        if column is None:
            return None
        return column if column not in ("id", "class", "split") else "group"

    def metadata(self) -> list[dict[str, str]]:
        """Per point: image id, class, split and (when the dataset has one) group."""
        names, group = self.dataset.class_names, self.group_header()
        rows = []
        for r in self.points:
            row = {"id": r.id, "class": names[r.label], "split": r.split or "-"}
            if group is not None:
                row[group] = r.group or "-"
            rows.append(row)
        return rows


def subsample(records: Sequence[Record], limit: int | None, seed: int) -> list[Record]:
    """At most ``limit`` records (all with ``None``), stratified by class and seeded; within a
    class, records are chosen by a hash of (seed, id), so the choice does not depend on their
    order. Classes rounded up past ``limit`` give back their last pick, largest class first."""
    if limit is None or len(records) <= limit:
        return list(records)
    chosen = stratified_sample(records, limit, seed)
    by_class: dict[int, list[Record]] = defaultdict(list)
    for record in chosen:
        by_class[record.label].append(record)
    for _ in range(len(chosen) - limit):
        max(by_class.values(), key=len).pop()
    keep = {r.id for members in by_class.values() for r in members}
    return [r for r in records if r.id in keep]


def _run_json(run: Path) -> dict[str, Any]:
    path = run / "run.json"
    if not (run / "results.parquet").is_file() or not path.is_file():
        raise MedprobeError(
            f"{run} is not a finished study run folder (no results.parquet and run.json); "
            "give the --out folder of `medprobe run`"
        )
    return json.loads(path.read_text())


def feature_keys(results: pd.DataFrame) -> dict[str, dict[str, tuple[str, str]]]:
    """dataset -> encoder -> (feature-store key, domain) of the final-layer features a results
    table measured, in the order it lists them."""
    rows = results[(results.layer == "final") & results.feature_key.notna()]
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for r in rows.drop_duplicates(["dataset", "encoder"]).itertuples():
        domain = "" if pd.isna(r.domain) else str(r.domain)
        found.setdefault(str(r.dataset), {})[str(r.encoder)] = (str(r.feature_key), domain)
    return found


def _reopened(datasets: dict[str, Dataset], name: str, results: pd.DataFrame) -> Dataset:
    """The study's dataset ``name`` as it is now, if it is still what the run measured (its
    labels, splits and groups describe the stored features only then)."""
    if name not in datasets:
        raise MedprobeError(
            f"dataset {name!r} of the study cannot be opened again (see above); "
            "give --data-root if its files moved"
        )
    dataset = datasets[name]
    measured = set(results.dataset_fingerprint[results.dataset == name].dropna())
    if measured and dataset.fingerprint() not in measured:
        raise MedprobeError(
            f"dataset {name!r} changed since the study ran (its images, labels or splits "
            "differ); rerun `medprobe run` and export again"
        )
    return dataset


def _load(store: FeatureStore, key: str, encoder: str, dataset: str) -> tuple[np.ndarray, list]:
    entry = store.entry(key)
    try:
        if not entry.complete:
            raise DamagedEntryError("not there (removed, or the cache was moved)")
        features, ids, _ = entry.load()
    except DamagedEntryError as exc:
        raise MedprobeError(
            f"the features of {encoder} on {dataset} (feature-store entry {key} in "
            f"{store.root}) are {exc}; rerun `medprobe run` to extract them again"
        ) from None
    return features, [str(i) for i in ids]


def study_embeddings(
    run: Path, max_points: int | None = 5000, *, data_root: Path | None = None
) -> list[ExportedDataset]:
    """Every (model, dataset) embedding of a finished study run, on at most ``max_points``
    points per dataset (the same points for every model); datasets are reopened from the
    study config (``data_root``: where relative dataset paths start, as for ``run``)."""
    if max_points is not None and max_points <= 0:
        raise MedprobeError(f"--max-points must be a positive number, got {max_points}")
    recorded = _run_json(run)
    config = StudyConfig.model_validate(recorded["config"])
    if data_root is not None:
        config = config.model_copy(update={"base_dir": str(data_root.expanduser())})
    results = read_results(run / "results.parquet")
    keys = feature_keys(results)
    if not keys:
        raise MedprobeError(f"{run} has no model/dataset pair with features to export")
    store_root = Path(config.cache).expanduser() if config.cache else default_cache_dir()
    if not store_root.is_dir():
        raise MedprobeError(
            f"the study's feature store {store_root} does not exist; rerun `medprobe run` "
            "(or export from the machine that ran it)"
        )
    store = FeatureStore(store_root)
    datasets, _ = open_datasets(config)
    exported = []
    for name, by_encoder in keys.items():
        dataset = _reopened(datasets, name, results)
        loaded = {e: _load(store, key, e, name) for e, (key, _) in by_encoder.items()}
        common = set.intersection(*(set(ids) for _, ids in loaded.values()))
        records = [r for r in dataset.records if r.id in common]
        points = subsample(records, max_points, config.seed)
        models = []
        for encoder, (features, ids) in loaded.items():
            row = {image_id: i for i, image_id in enumerate(ids)}
            take = np.array([row[r.id] for r in points], dtype=np.int64)
            key, domain = by_encoder[encoder]
            models.append(
                ExportedModel(encoder, domain, key, np.asarray(features[take], np.float32))
            )
        exported.append(ExportedDataset(dataset, points, models, len(records), config.seed))
    return exported


def square_thumbnail(dataset: Dataset, record: Record, size: int) -> Image.Image:
    """The record's image fitted into a ``size`` x ``size`` square (letterboxed, so shapes
    are kept); an unreadable image is a grey square."""
    cell = Image.new("RGB", (size, size), (128, 128, 128))
    try:
        image = dataset.load_image(record, reduce_to=size)
    except BadImageError:
        return cell
    image.thumbnail((size, size))
    cell.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return cell


# ---------------------------------------------------------------------- TensorBoard projector


def sprite_grid(n: int) -> int:
    """Images per side of the projector's square sprite for ``n`` points."""
    return max(1, math.ceil(math.sqrt(n)))


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda h: h.write(text.encode()))


def _tsv_cell(value: str) -> str:
    """A metadata value that cannot break the TSV (tabs and line breaks become spaces)."""
    return " ".join(str(value).split()) or "-"


def _pbtxt(text: str) -> str:
    """A protobuf text-format string literal."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_projector(exported: Sequence[ExportedDataset], out: Path, thumbnail: int = 64) -> Path:
    """TensorBoard projector files under ``out``: ``projector_config.pbtxt`` with one
    embedding per (model, dataset); per dataset a folder with ``metadata.tsv`` (header + one
    row per point) and ``sprite.png``, shared by its models, and one tensor TSV per model.
    Open with ``tensorboard --logdir out``, tab "Projector"."""
    blocks, notes = [], []
    for part in exported:
        folder = out / slug(part.dataset.name)
        folder.mkdir(parents=True, exist_ok=True)
        rows = part.metadata()
        header = list(rows[0])
        _write_text(
            folder / "metadata.tsv",
            "\t".join(header)
            + "\n"
            + "".join("\t".join(_tsv_cell(r[c]) for c in header) + "\n" for r in rows),
        )
        grid = sprite_grid(len(part.points))
        cell = max(1, min(thumbnail, MAX_SPRITE_SIDE // grid))
        sprite = Image.new("RGB", (grid * cell, grid * cell), (0, 0, 0))
        for i, record in enumerate(part.points):
            sprite.paste(
                square_thumbnail(part.dataset, record, cell),
                ((i % grid) * cell, (i // grid) * cell),
            )
        atomic_write(folder / "sprite.png", lambda h, s=sprite: s.save(h, format="PNG"))
        notes.append(f"{part.dataset.name}: {part.note()}")
        for model in part.models:
            tensors = folder / f"{slug(model.encoder)}.tsv"
            atomic_write(
                tensors,
                lambda h, e=model.embedding: np.savetxt(h, e, fmt="%.7g", delimiter="\t"),
            )
            n, d = model.embedding.shape
            here = folder.relative_to(out).as_posix()
            blocks.append(
                "embeddings {\n"
                f"  tensor_name: {_pbtxt(f'{model.encoder} on {part.dataset.name}')}\n"
                f"  tensor_path: {_pbtxt(f'{here}/{tensors.name}')}\n"
                f"  metadata_path: {_pbtxt(f'{here}/metadata.tsv')}\n"
                f"  tensor_shape: {n}\n"
                f"  tensor_shape: {d}\n"
                "  sprite {\n"
                f"    image_path: {_pbtxt(f'{here}/sprite.png')}\n"
                f"    single_image_dim: {cell}\n"
                f"    single_image_dim: {cell}\n"
                "  }\n"
                "}\n"
            )
    comments = "".join(f"# {_tsv_cell(n)}\n" for n in notes)
    config = out / "projector_config.pbtxt"
    _write_text(config, f"# written by medprobe export; points:\n{comments}{''.join(blocks)}")
    _write_text(
        out / "README.txt",
        "TensorBoard embedding projector files written by `medprobe export --to projector`.\n"
        f"Open them with: tensorboard --logdir {out}   (then the Projector tab)\n\n"
        "Points per dataset:\n" + "".join(f"- {n}\n" for n in notes),
    )
    return config


# ---------------------------------------------------------------------- FiftyOne


def embedding_field(encoder: str) -> str:
    """The FiftyOne field of a model's embedding: ``emb_<model>``, a valid field name (an
    altered name keeps a hash of the original, so two models never share a field)."""
    clean = re.sub(r"\W", "_", encoder)
    return f"emb_{clean}" if clean == encoder else f"emb_{clean}_{fingerprint(encoder, length=8)}"


def _image_path(part: ExportedDataset, record: Record, folder: Path) -> str:
    """A file the FiftyOne App can show: the dataset's own file when it is one a browser
    shows, else the image written out as PNG under ``folder/data`` (a relative path, which
    FiftyOne's importer resolves against the export folder)."""
    if isinstance(part.dataset, FileDataset):
        source = Path(str(record.source))
        if source.suffix.lower() in BROWSER_IMAGES:
            return str(source.resolve())
    relative = Path("data") / f"{slug(record.id)}.png"
    image = part.dataset.load_image(record)
    (folder / "data").mkdir(exist_ok=True)
    atomic_write(folder / relative, lambda h: image.save(h, format="PNG"))
    return relative.as_posix()


def _vector(values: np.ndarray) -> str:
    """A JSON array of float32 values at their precision (NaN as JSON's NaN, which Python's
    and so FiftyOne's JSON reader accept)."""
    return json.dumps([float(f"{v:.7g}") for v in values.tolist()])


def write_fiftyone(exported: Sequence[ExportedDataset], out: Path, thumbnail: int = 64) -> Path:
    """One FiftyOne dataset folder per dataset under ``out`` (``metadata.json`` with the field
    schema and provenance, ``samples.json``, ``data/`` for images that are not files), in the
    layout FiftyOne's ``FiftyOneDataset`` importer reads::

        fo.Dataset.from_dir("<out>/<dataset>", dataset_type=fo.types.FiftyOneDataset)

    Per sample: ``filepath``, ``tags`` (the split), ``ground_truth`` (a ``Classification``),
    ``image_id``, the group column when the dataset has one, and ``emb_<model>`` (a
    ``VectorField``) per model."""
    del thumbnail  # FiftyOne makes its own thumbnails
    notes = []
    for part in exported:
        folder = out / slug(part.dataset.name)
        folder.mkdir(parents=True, exist_ok=True)
        fields = {m.encoder: embedding_field(m.encoder) for m in part.models}
        group = part.group_header()
        schema = {
            "ground_truth": f"{_FIELDS}.EmbeddedDocumentField(fiftyone.core.labels.Classification)",
            "image_id": f"{_FIELDS}.StringField",
            **({group: f"{_FIELDS}.StringField"} if group else {}),
            **{field: f"{_FIELDS}.VectorField" for field in fields.values()},
        }
        metadata = {
            "name": part.dataset.name,
            "media_type": "image",
            "sample_fields": schema,
            "info": {
                "description": f"{part.dataset.name} ({part.dataset.modality}): {part.note()}",
                "classes": list(part.dataset.class_names),
                "medprobe": {
                    "version": __version__,
                    "dataset_fingerprint": part.dataset.fingerprint(),
                    "points": part.note(),
                    "embeddings": {
                        fields[m.encoder]: {
                            "encoder": m.encoder,
                            "domain": m.domain,
                            "feature_key": m.feature_key,
                            "dim": int(m.embedding.shape[1]),
                        }
                        for m in part.models
                    },
                },
            },
        }
        _write_text(folder / "metadata.json", json.dumps(metadata, indent=1))
        names = part.dataset.class_names
        lines = []
        for i, record in enumerate(part.points):
            sample = {
                "filepath": _image_path(part, record, folder),
                "tags": [record.split] if record.split else [],
                "ground_truth": {"_cls": "Classification", "label": names[record.label]},
                "image_id": record.id,
                **({group: record.group} if group else {}),
            }
            vectors = "".join(
                f", {json.dumps(fields[m.encoder])}: {_vector(m.embedding[i])}" for m in part.models
            )
            lines.append(json.dumps(sample)[:-1] + vectors + "}")
        _write_text(folder / "samples.json", '{"samples": [\n' + ",\n".join(lines) + "\n]}\n")
        notes.append(f"{part.dataset.name}: {part.note()}")
    _write_text(
        out / "README.txt",
        "FiftyOne datasets written by `medprobe export --to fiftyone`, one folder per dataset.\n"
        "Load one with:\n\n"
        "    import fiftyone as fo\n"
        '    dataset = fo.Dataset.from_dir("<folder>", dataset_type=fo.types.FiftyOneDataset)\n\n'
        "Points per dataset:\n" + "".join(f"- {n}\n" for n in notes),
    )
    return out


_FIELDS = "fiftyone.core.fields"


@dataclass(frozen=True)
class Exporter:
    """An export target: how it writes, and how many points it takes by default."""

    name: str
    write: Callable[[Sequence[ExportedDataset], Path, int], Path]
    default_max_points: int | None
    description: str


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter(
            "projector",
            write_projector,
            5000,
            "TensorBoard embedding projector (tensorboard --logdir DIR)",
        ),
        Exporter(
            "fiftyone",
            write_fiftyone,
            None,
            "FiftyOne datasets (fo.Dataset.from_dir(..., fo.types.FiftyOneDataset))",
        ),
    )
}


def export_study(
    run: Path,
    to: str,
    out: Path,
    *,
    max_points: int | None = None,
    thumbnail: int = 64,
    data_root: Path | None = None,
) -> tuple[Path, list[ExportedDataset]]:
    """Export a finished study run folder to ``to`` (a name of :data:`EXPORTERS`) under
    ``out``; ``max_points`` defaults to the target's (5,000 for the projector, every image
    for FiftyOne)."""
    if to not in EXPORTERS:
        raise MedprobeError(f"--to must be one of {', '.join(EXPORTERS)}; got {to!r}")
    exporter = EXPORTERS[to]
    exported = study_embeddings(
        run,
        max_points if max_points is not None else exporter.default_max_points,
        data_root=data_root,
    )
    out.mkdir(parents=True, exist_ok=True)
    return exporter.write(exported, out, thumbnail), exported
