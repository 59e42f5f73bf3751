"""Datasets of image files: a folder per class, or a CSV/Parquet manifest."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from PIL import Image

from medprobe.datasets.base import SPLITS, Dataset, Record, SkippedRecord
from medprobe.datasets.io import open_image
from medprobe.datasets.prompts import canonical_modality, prompts_for
from medprobe.datasets.splits import assign_splits, normalise_splits, spreadsheet_rows
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

Fingerprint = Literal["stat", "content"]

#: Manifests a folder may carry (medprobe's own ``synth`` writes manifest.csv).
FOLDER_MANIFESTS = ("manifest.csv", "MANIFEST.csv", "manifest.parquet")


@dataclass(frozen=True)
class FileOptions:
    """How a file-backed dataset is opened, besides where its files are."""

    name: str | None = None
    modality: str | None = None
    prompts: Sequence[str] | None = None
    test_fraction: float = 0.3
    val_fraction: float = 0.0
    seed: int = 0
    fingerprint_mode: Fingerprint = "stat"


class FileDataset(Dataset):
    """Records whose ``source`` is a file path; images are opened with :func:`open_image`.

    ``problems`` lists what was found while building the dataset (empty class folders, rows
    left out, groups split across given splits...); ``listing`` says what listed the images
    (class folders or a manifest). The image fingerprint is, by default, a cheap stable proxy
    of the content: every file's relative path, size and modification time (a rewritten image
    changes its mtime, so features are never reused stale; copying without preserving mtimes
    only costs a recomputation). ``fingerprint_mode="content"`` hashes every byte instead (for
    copies that keep names, sizes and mtimes but not content).
    """

    def __init__(
        self,
        *,
        root: Path,
        listing: str,
        fingerprint_mode: Fingerprint = "stat",
        problems: Sequence[str] = (),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if fingerprint_mode not in ("stat", "content"):
            raise MedprobeError(
                f"fingerprint must be 'stat' or 'content', got {fingerprint_mode!r}"
            )
        self.root = root
        self.listing = listing
        self.fingerprint_mode = fingerprint_mode
        self.problems = list(problems)

    def load_image(self, record: Record, reduce_to: int | None = None) -> Image.Image:
        return open_image(record.source, reduce_to)

    def image_content(self) -> Any:
        parts = []
        for record in self.records:
            path = Path(str(record.source))
            try:
                if self.fingerprint_mode == "content":
                    identity: object = fingerprint(path.read_bytes(), length=32)
                else:
                    stat = path.stat()
                    identity = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                identity = "missing"
            parts.append((record.id, identity))
        return ["files-v2", self.fingerprint_mode, parts]


def _group_problems(records: Sequence[Record]) -> list[str]:
    """Groups that a given split puts on more than one side (their images leak across)."""
    sides: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.group is not None:
            sides[record.group].add(record.split)
    split = sorted(g for g, s in sides.items() if len(s) > 1)
    if not split:
        return []
    shown = ", ".join(map(repr, split[:5])) + (" ..." if len(split) > 5 else "")
    return [f"{len(split)} group(s) are on both sides of the given split: {shown}"]


@dataclass
class Described:
    """Records ready to become a dataset: classes kept, splits given or generated."""

    records: list[Record]
    class_names: list[str]
    problems: list[str]
    name: str
    modality: str
    prompts: list[str]

    def dataset_args(self) -> dict[str, Any]:
        """The :class:`~medprobe.datasets.base.Dataset` arguments these describe."""
        return {
            "name": self.name,
            "modality": self.modality,
            "class_names": self.class_names,
            "records": self.records,
            "prompts": self.prompts,
        }


def finish_records(
    records: list[Record], class_names: Sequence[str], *, options: FileOptions, problems: list[str]
) -> Described:
    """Drop empty classes, require 2 usable ones, note classes that differ only in case, and
    assign splits where the source gave none (or note groups a given split divides)."""
    counts = {i: 0 for i in range(len(class_names))}
    for record in records:
        counts[record.label] += 1
    empty = [class_names[i] for i, c in counts.items() if c == 0]
    problems = [*problems, *(f"class {c!r} has no images" for c in empty)]
    name = options.name or "dataset"
    if len(class_names) - len(empty) < 2:
        raise MedprobeError(
            f"dataset {name!r} has fewer than 2 classes with images "
            f"({', '.join(f'{class_names[i]}: {c}' for i, c in counts.items()) or 'none'})"
        )
    folded = defaultdict(list)
    for cls in class_names:
        folded[cls.casefold()].append(cls)
    problems += [
        f"classes {' and '.join(map(repr, same))} differ only in case"
        for same in folded.values()
        if len(same) > 1
    ]
    keep = [i for i, c in counts.items() if c > 0]
    remap = {old: new for new, old in enumerate(keep)}
    records = [replace(r, label=remap[r.label]) for r in records]
    if all(r.split in SPLITS for r in records):
        problems += _group_problems(records)
    else:
        records = assign_splits(
            records,
            test_fraction=options.test_fraction,
            val_fraction=options.val_fraction,
            seed=options.seed,
        )
    modality = options.modality or "unknown"
    return Described(
        records,
        [class_names[i] for i in keep],
        problems,
        name,
        canonical_modality(modality),
        prompts_for(modality, options.prompts),
    )


def _finish(
    records: list[Record],
    class_names: Sequence[str],
    *,
    root: Path,
    listing: str,
    options: FileOptions,
    problems: list[str],
    rejected: Sequence[SkippedRecord] = (),
    group_column: str | None = None,
) -> FileDataset:
    described = finish_records(records, class_names, options=options, problems=problems)
    return FileDataset(
        root=root,
        listing=listing,
        fingerprint_mode=options.fingerprint_mode,
        problems=described.problems,
        group_column=group_column,
        rejected=rejected,
        **described.dataset_args(),
    )


def image_folder(
    root: str | Path,
    *,
    modality: str = "unknown",
    name: str | None = None,
    prompts: Sequence[str] | None = None,
    test_fraction: float = 0.3,
    val_fraction: float = 0.0,
    seed: int = 0,
    fingerprint_mode: Fingerprint = "stat",
) -> FileDataset:
    """``root/<class>/<image>`` (any depth below the class folder); classes sorted by name.

    Files are kept whatever their extension (a bad one is skipped with its reason when read);
    hidden files and the manifest files medprobe writes are ignored. There is no split on disk,
    so a deterministic stratified split is assigned (see :func:`assign_splits`). A class
    folder that itself holds several folders of images is reported: the root may be one level
    too high (the "classes" would be datasets).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise MedprobeError(f"image folder {root} does not exist or is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise MedprobeError(
            f"image folder {root} has no class sub-folders (expected root/<class>/)"
        )
    records: list[Record] = []
    problems: list[str] = []
    for label, class_dir in enumerate(class_dirs):
        nested = sorted(p.name for p in class_dir.iterdir() if p.is_dir() and any(p.iterdir()))
        if len(nested) > 1:
            problems.append(
                f"class folder {class_dir.name!r} holds folders {', '.join(nested[:4])}: is "
                f"{root} one level too high (are the classes datasets)?"
            )
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            if path.name.startswith(".") or path.name in FOLDER_MANIFESTS:
                continue
            rel = path.relative_to(root).as_posix()
            records.append(Record(id=rel, label=label, split="", source=str(path)))
    options = FileOptions(
        name or root.name, modality, prompts, test_fraction, val_fraction, seed, fingerprint_mode
    )
    return _finish(
        records,
        [d.name for d in class_dirs],
        root=root,
        listing="class folders",
        options=options,
        problems=problems,
    )


def folder_manifest(root: Path) -> Path | None:
    """The manifest a folder carries (e.g. one written by ``medprobe synth``), if any."""
    return next((root / n for n in FOLDER_MANIFESTS if (root / n).is_file()), None)


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in {".parquet", ".pq"}:
        return pd.read_parquet(path).astype(str)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _splits(table: pd.DataFrame, column: str, path: Path) -> list[str]:
    """Each row's split, normalised (see :func:`normalise_splits`); none if no column."""
    if column not in table.columns:
        return [""] * len(table)
    return normalise_splits(table[column].astype(str).tolist(), f"manifest {path}")


def manifest(
    path: str | Path,
    *,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str = "split",
    group_column: str | None = None,
    where: Mapping[str, str] | None = None,
    modality: str | None = None,
    name: str | None = None,
    prompts: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    test_fraction: float = 0.3,
    val_fraction: float = 0.0,
    seed: int = 0,
    fingerprint_mode: Fingerprint = "stat",
) -> FileDataset:
    """A CSV or Parquet table with one row per image.

    Paths are relative to the manifest's folder; a path that escapes it (``../``, absolute paths
    elsewhere) is rejected. ``where`` keeps rows whose columns equal the given values (e.g.
    ``{"dataset": "busi_256"}``); a manifest whose ``dataset`` column names several datasets
    needs one. Split values are normalised (``Train ``, ``VALIDATION`` -> ``train``, ``val``).
    Rows with an empty label, a file listed twice (the later rows) and a file listed under two
    labels (all its rows) are left out, each with its reason (``rejected``). ``group_column``
    names a patient / lesion column: generated splits keep each group on one side and
    intervals resample groups. Other columns are kept in each record's ``meta``. The modality
    comes from ``modality`` or a uniform ``modality`` column.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MedprobeError(f"manifest {path} does not exist")
    table = _read_table(path)
    columns = (path_column, label_column, *(where or {}), *([group_column] if group_column else []))
    for column in columns:
        if column not in table.columns:
            raise MedprobeError(
                f"manifest {path} has no column {column!r} (columns: {', '.join(table.columns)})"
            )
    if not where and "dataset" in table.columns and table["dataset"].nunique() > 1:
        names = ", ".join(sorted(table["dataset"].unique())[:12])
        raise MedprobeError(
            f"manifest {path} lists several datasets ({names}); choose one with "
            "where: {dataset: NAME} (Python: where={'dataset': NAME})"
        )
    for column, value in (where or {}).items():
        table = table[table[column].astype(str) == str(value)]
    if table.empty:
        raise MedprobeError(
            f"manifest {path} has no rows" + (f" where {dict(where)}" if where else "")
        )
    table = table.reset_index(drop=True)
    root = path.parent.resolve()
    if modality is None:
        values = set(table["modality"]) if "modality" in table.columns else set()
        modality = values.pop() if len(values) == 1 else "unknown"
    splits = _splits(table, split_column, path)
    rows = table.to_dict("records")
    labels = [str(row[label_column]) for row in rows]
    rejected: list[SkippedRecord] = []
    problems: list[str] = []
    by_file: dict[Path, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        rel = str(row[path_column])
        resolved = (root / rel).resolve()
        if not resolved.is_relative_to(root):
            raise MedprobeError(f"manifest path {rel!r} escapes the manifest's folder {root}")
        if not labels[i].strip():
            rejected.append(SkippedRecord(rel, f"manifest row {i + 2}: empty label"))
            continue
        by_file[resolved].append(i)
    kept: list[int] = []
    for indices in by_file.values():
        rel = str(rows[indices[0]][path_column])
        distinct = sorted({labels[i] for i in indices})
        if len(distinct) > 1:
            rows_of = spreadsheet_rows(indices)
            reason = f"listed with labels {', '.join(map(repr, distinct))} (rows {rows_of})"
            rejected.append(SkippedRecord(rel, reason))
            continue
        kept.append(indices[0])
        for i in indices[1:]:
            rejected.append(
                SkippedRecord(str(rows[i][path_column]), f"listed again in row {i + 2}")
            )
    kept.sort()
    if rejected:
        problems.append(f"{len(rejected)} manifest row(s) left out (see the skipped list)")
    names = list(class_names) if class_names is not None else sorted({labels[i] for i in kept})
    unknown = sorted({labels[i] for i in kept} - set(names))
    if unknown:
        raise MedprobeError(f"manifest labels not in class_names: {', '.join(unknown[:5])}")
    index = {n: i for i, n in enumerate(names)}
    extra = [c for c in table.columns if c not in {path_column, label_column, split_column}]
    records = []
    empty_groups = 0
    for i in kept:
        row, rel = rows[i], str(rows[i][path_column])
        group = str(row[group_column]).strip() if group_column else None
        if group_column and not group:
            empty_groups += 1
            group = f"(image) {rel}"  # no group named: the image is its own group
        records.append(
            Record(
                id=rel,
                label=index[labels[i]],
                split=splits[i],
                source=str((root / rel).resolve()),
                meta={c: row[c] for c in extra},
                group=group,
            )
        )
    if empty_groups:
        problems.append(
            f"{empty_groups} row(s) have an empty {group_column!r}: each is its own group"
        )
    options = FileOptions(
        name or path.stem, modality, prompts, test_fraction, val_fraction, seed, fingerprint_mode
    )
    return _finish(
        records,
        names,
        root=root,
        listing=f"manifest {path.name}",
        options=options,
        problems=problems,
        rejected=rejected,
        group_column=group_column,
    )
