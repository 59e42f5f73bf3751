"""A Hugging Face ``datasets`` dataset on disk (``save_to_disk`` folder, or Parquet files) as a
dataset: Arrow tables are memory-mapped and each image is decoded when it is read, so memory
stays bounded whatever the number of images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from medprobe.datasets.base import Dataset, Record, SkippedRecord
from medprobe.datasets.files import FileOptions, finish_records
from medprobe.datasets.pixels import to_rgb
from medprobe.datasets.splits import normalise_splits
from medprobe.errors import BadImageError, MedprobeError


class ArrowDataset(Dataset):
    """Images in the ``image`` column of Arrow tables (one per HF split)."""

    def __init__(self, tables: dict[str, Any], image: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # only the image column crosses to the DataLoader workers (memory-mapped, by path)
        self.tables = {split: t.select_columns([image]) for split, t in tables.items()}
        self.image = image
        self.problems: list[str] = []
        self.listing = f"Hugging Face dataset ({', '.join(tables)})"

    def load_image(self, record: Record, reduce_to: int | None = None) -> Image.Image:
        split, row = record.source.rsplit("/", 1)
        try:
            value = self.tables[split][int(row)][self.image]
        except (OSError, ValueError, SyntaxError) as exc:
            raise BadImageError(f"corrupt image: {exc}") from None
        if value is None:
            raise BadImageError("no image in this row")
        if not isinstance(value, Image.Image):
            raise BadImageError(
                f"the {self.image!r} column holds {type(value).__name__}, not images"
            )
        value.load()
        return to_rgb(value)

    def image_content(self) -> Any:
        files = []
        for split, table in self.tables.items():
            for cache in table.cache_files:
                stat = Path(cache["filename"]).stat()
                files.append((split, Path(cache["filename"]).name, stat.st_size, stat.st_mtime_ns))
        fingerprints = {split: table._fingerprint for split, table in self.tables.items()}
        return ["arrow-v1", fingerprints, files, [r.id for r in self.records]]


def _load(path: Path, split: str | Sequence[str] | None) -> dict[str, Any]:
    """HF split name -> table, for a ``save_to_disk`` folder or Parquet file(s)."""
    import datasets

    if path.is_dir() and not any(path.glob("*.parquet")):
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as exc:
            raise MedprobeError(f"{path} is not a saved Hugging Face dataset ({exc})") from None
    else:
        files = sorted(str(p) for p in path.glob("*.parquet")) if path.is_dir() else [str(path)]
        if not files or not all(Path(f).is_file() for f in files):
            raise MedprobeError(f"no Parquet file at {path}")
        loaded = datasets.load_dataset("parquet", data_files={"train": files})
    tables = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"all": loaded}
    if split is not None:
        wanted = [split] if isinstance(split, str) else list(split)
        unknown = [s for s in wanted if s not in tables]
        if unknown:
            raise MedprobeError(f"{path} has no split {unknown}; it has {', '.join(tables)}")
        tables = {s: tables[s] for s in wanted}
    return tables


def hf_dataset(
    path: str | Path,
    *,
    split: str | Sequence[str] | None = None,
    image: str = "image",
    label: str = "label",
    name: str | None = None,
    modality: str | None = None,
    prompts: Sequence[str] | None = None,
    group_column: str | None = None,
    test_fraction: float = 0.3,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> ArrowDataset:
    """A local Hugging Face dataset: a ``save_to_disk`` folder (``Dataset`` or ``DatasetDict``)
    or Parquet file(s) with an image column and a label column.

    ``split`` picks HF splits (default all). Splits named train / validation / test (any case)
    become medprobe's; a single split (or an unsplit dataset) gets a generated stratified
    split. A
    ``ClassLabel`` column gives the class names, otherwise the label values do. Rows without a
    label are left out with the reason; unreadable images are skipped when read.
    """
    path = Path(path).expanduser()
    tables = _load(path, split)
    first = next(iter(tables.values()))
    for column in (image, label, *([group_column] if group_column else [])):
        if column not in first.column_names:
            raise MedprobeError(
                f"{path} has no column {column!r} (columns: {', '.join(first.column_names)})"
            )
    feature = first.features[label]
    names_of = getattr(feature, "names", None)  # a ClassLabel
    records, rejected, given = [], [], []
    raw: list[tuple[str, int, str, str | None]] = []
    for hf_split, table in tables.items():
        columns = [label, *([group_column] if group_column else [])]
        values = table.select_columns(columns).to_dict()
        for row, value in enumerate(values[label]):
            record_id = f"{hf_split}/{row}"
            if value is None or (isinstance(value, str) and not value.strip()):
                rejected.append(SkippedRecord(record_id, "row has no label"))
                continue
            text = names_of[int(value)] if names_of is not None else str(value)
            group = str(values[group_column][row]) if group_column else None
            raw.append((record_id, row, text, group))
            given.append("" if len(tables) == 1 else hf_split)
    splits = normalise_splits(given, f"Hugging Face dataset {path}")
    names = list(names_of) if names_of is not None else sorted({r[2] for r in raw})
    index = {n: i for i, n in enumerate(names)}
    records = [
        Record(id=record_id, label=index[text], split=s, source=record_id, group=group)
        for (record_id, _, text, group), s in zip(raw, splits, strict=True)
    ]
    options = FileOptions(name or path.stem, modality, prompts, test_fraction, val_fraction, seed)
    described = finish_records(records, names, options=options, problems=[])
    dataset = ArrowDataset(
        tables, image, group_column=group_column, rejected=rejected, **described.dataset_args()
    )
    dataset.problems = described.problems
    return dataset
