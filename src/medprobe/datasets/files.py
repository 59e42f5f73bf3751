"""Datasets of image files: a folder per class, or a CSV/Parquet manifest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd
from PIL import Image

from medprobe.datasets.base import SPLITS, Dataset, Record
from medprobe.datasets.io import open_image
from medprobe.datasets.prompts import canonical_modality, prompts_for
from medprobe.datasets.splits import assign_splits
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

Fingerprint = Literal["stat", "content"]


class FileDataset(Dataset):
    """Records whose ``source`` is a file path; images are opened with :func:`open_image`.

    ``problems`` lists what was found while building the dataset (empty class folders, files
    that are not images by extension...). The fingerprint is, by default, a cheap stable proxy of
    the content: every file's relative path, size and modification time (a rewritten image
    changes its mtime, so features are never reused stale; copying without preserving mtimes
    only costs a recomputation). ``fingerprint_mode="content"`` hashes every byte instead.
    """

    def __init__(
        self,
        *,
        root: Path,
        fingerprint_mode: Fingerprint = "stat",
        problems: Sequence[str] = (),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.fingerprint_mode = fingerprint_mode
        self.problems = list(problems)

    def load_image(self, record: Record) -> Image.Image:
        return open_image(record.source)

    def fingerprint(self) -> str:
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
            parts.append((record.id, record.label, record.split, identity))
        return fingerprint("files-v1", self.class_names, parts)


def _finish(
    records: list[Record],
    *,
    class_names: Sequence[str],
    name: str,
    modality: str,
    prompts: Sequence[str] | None,
    root: Path,
    problems: list[str],
    test_fraction: float,
    val_fraction: float,
    seed: int,
    fingerprint_mode: Fingerprint,
) -> FileDataset:
    """Drop empty classes, require 2 usable ones, assign splits where missing."""
    counts = {i: 0 for i in range(len(class_names))}
    for record in records:
        counts[record.label] += 1
    empty = [class_names[i] for i, c in counts.items() if c == 0]
    problems += [f"class {c!r} has no images" for c in empty]
    if len(class_names) - len(empty) < 2:
        raise MedprobeError(
            f"dataset {name!r} has fewer than 2 classes with images "
            f"({', '.join(f'{class_names[i]}: {c}' for i, c in counts.items()) or 'none'})"
        )
    keep = [i for i, c in counts.items() if c > 0]
    remap = {old: new for new, old in enumerate(keep)}
    records = [Record(r.id, remap[r.label], r.split, r.source, r.meta) for r in records]
    if any(r.split not in SPLITS for r in records):
        records = assign_splits(
            records, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed
        )
    return FileDataset(
        root=root,
        fingerprint_mode=fingerprint_mode,
        problems=problems,
        name=name,
        modality=canonical_modality(modality),
        class_names=[class_names[i] for i in keep],
        records=records,
        prompts=prompts_for(modality, prompts),
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
    so a deterministic stratified split is assigned (see :func:`assign_splits`).
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
    for label, class_dir in enumerate(class_dirs):
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            if path.name.startswith("."):
                continue
            rel = path.relative_to(root).as_posix()
            records.append(Record(id=rel, label=label, split="", source=str(path)))
    return _finish(
        records,
        class_names=[d.name for d in class_dirs],
        name=name or root.name,
        modality=modality,
        prompts=prompts,
        root=root,
        problems=[],
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        seed=seed,
        fingerprint_mode=fingerprint_mode,
    )


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in {".parquet", ".pq"}:
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def manifest(
    path: str | Path,
    *,
    path_column: str = "path",
    label_column: str = "label",
    split_column: str = "split",
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
    ``{"dataset": "busi_256"}``). Other columns are kept in each record's ``meta``. The modality
    comes from ``modality`` or a uniform ``modality`` column.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MedprobeError(f"manifest {path} does not exist")
    table = _read_table(path)
    for column in (path_column, label_column, *(where or {})):
        if column not in table.columns:
            raise MedprobeError(
                f"manifest {path} has no column {column!r} (columns: {', '.join(table.columns)})"
            )
    for column, value in (where or {}).items():
        table = table[table[column].astype(str) == str(value)]
    if table.empty:
        raise MedprobeError(
            f"manifest {path} has no rows" + (f" where {dict(where)}" if where else "")
        )
    root = path.parent.resolve()
    if modality is None:
        values = set(table["modality"]) if "modality" in table.columns else set()
        modality = values.pop() if len(values) == 1 else "unknown"
    labels = table[label_column].astype(str)
    names = list(class_names) if class_names is not None else sorted(set(labels))
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise MedprobeError(f"manifest labels not in class_names: {', '.join(unknown[:5])}")
    index = {n: i for i, n in enumerate(names)}
    has_split = split_column in table.columns
    extra = [c for c in table.columns if c not in {path_column, label_column, split_column}]
    records = []
    for row, label in zip(table.to_dict("records"), labels, strict=True):
        rel = str(row[path_column])
        resolved = (root / rel).resolve()
        if not resolved.is_relative_to(root):
            raise MedprobeError(f"manifest path {rel!r} escapes the manifest's folder {root}")
        split = str(row[split_column]).strip().lower() if has_split else ""
        records.append(
            Record(
                id=rel,
                label=index[label],
                split=split,
                source=str(resolved),
                meta={c: row[c] for c in extra},
            )
        )
    return _finish(
        records,
        class_names=names,
        name=name or path.stem,
        modality=modality,
        prompts=prompts,
        root=root,
        problems=[],
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        seed=seed,
        fingerprint_mode=fingerprint_mode,
    )
