"""WebDataset tar shards (``shards/{000..099}.tar``) as a dataset, read by random access.

A sample is the group of tar members that share a key (WebDataset's convention:
``dir/key.jpg``, ``dir/key.cls``, ``dir/key.json``). The shards are indexed once (member
offsets from the tar headers; no image is decoded), then each image is read straight from
its offset, so memory stays bounded whatever the number of images and DataLoader workers can
read in parallel. Ids are ``<shard file>/<key>``: stable, and with the shard's size and mtime
(or, with ``fingerprint_mode="content"``, the members' bytes) they make the image
fingerprint.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from braceexpand import braceexpand
from PIL import Image

from medprobe.datasets.base import Dataset, Record, SkippedRecord
from medprobe.datasets.files import FileOptions, Fingerprint, finish_records
from medprobe.datasets.io import decode_image
from medprobe.datasets.splits import normalise_splits
from medprobe.errors import BadImageError, MedprobeError
from medprobe.fingerprint import fingerprint

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm")


@dataclass(frozen=True)
class Member:
    """Where one image lies inside a shard."""

    shard: int
    offset: int
    size: int


class ShardDataset(Dataset):
    """Images read from WebDataset tar shards (see the module docstring)."""

    def __init__(
        self,
        shards: Sequence[Path],
        members: dict[str, Member],
        *,
        fingerprint_mode: Fingerprint = "stat",
        problems: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shards = list(shards)
        self.members = members
        self.fingerprint_mode = fingerprint_mode
        self.problems = list(problems)
        self.listing = f"{len(self.shards)} WebDataset shard(s)"

    def _read(self, record: Record) -> bytes:
        member = self.members[record.id]
        with self.shards[member.shard].open("rb") as handle:
            handle.seek(member.offset)
            data = handle.read(member.size)
        if len(data) != member.size:
            raise BadImageError("truncated shard: the image's bytes end early")
        return data

    def load_image(self, record: Record, reduce_to: int | None = None) -> Image.Image:
        return decode_image(io.BytesIO(self._read(record)), reduce_to)

    def image_content(self) -> Any:
        if self.fingerprint_mode == "content":
            per_image = [(r.id, fingerprint(self._read(r), length=32)) for r in self.records]
            return ["shards-v1", "content", per_image]
        stats = [(s.name, s.stat().st_size, s.stat().st_mtime_ns) for s in self.shards]
        return ["shards-v1", "stat", stats, [r.id for r in self.records]]


def _label_of(fields: dict[str, bytes]) -> tuple[str | None, dict[str, Any]]:
    """The sample's label (``.cls``, ``.label``/``.txt``, or ``label`` in ``.json``) and its
    JSON metadata."""
    meta = json.loads(fields["json"]) if "json" in fields else {}
    for key in ("cls", "label", "txt"):
        if key in fields:
            return fields[key].decode().strip(), meta
    value = meta.get("label")
    return (str(value) if value is not None else None), meta


def webdataset(
    pattern: str | Path,
    *,
    name: str | None = None,
    modality: str | None = None,
    prompts: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    group_column: str | None = None,
    test_fraction: float = 0.3,
    val_fraction: float = 0.0,
    seed: int = 0,
    fingerprint_mode: Fingerprint = "stat",
) -> ShardDataset:
    """WebDataset shards matching ``pattern`` (brace expansion: ``data/{000..099}.tar``).

    Each sample needs one image member and a label (``.cls``, ``.txt`` or ``label`` in
    ``.json``; ``class_names`` map integer ``.cls`` labels to names). ``split`` and the
    ``group_column`` field come from the ``.json`` when present; without splits a stratified
    split is generated. Samples without an image or a label are left out with the reason.
    Shards must be uncompressed ``.tar`` (random access).
    """
    from webdataset.tariterators import base_plus_ext  # pulls in torch: only when used

    shards = [Path(p).expanduser() for p in braceexpand(str(pattern))]
    missing = [str(p) for p in shards if not p.is_file()]
    if missing:
        raise MedprobeError(f"WebDataset shard(s) not found: {', '.join(missing[:3])}")
    members: dict[str, Member] = {}
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    rejected: list[SkippedRecord] = []
    for number, shard in enumerate(shards):
        try:
            with tarfile.open(shard, "r:") as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    key, ext = base_plus_ext(info.name)
                    if key is None:
                        continue
                    sample_id = f"{shard.name}/{key}"
                    ext = ext.lower()
                    if ext in IMAGE_EXTENSIONS and sample_id not in members:
                        members[sample_id] = Member(number, info.offset_data, info.size)
                        samples[sample_id].setdefault("__image__", b"")
                    elif ext in ("cls", "label", "txt", "json"):
                        samples[sample_id][ext] = tar.extractfile(info).read()
        except tarfile.ReadError as exc:
            raise MedprobeError(
                f"{shard} is not an uncompressed tar shard ({exc}); medprobe reads WebDataset "
                "shards by random access: store them as plain .tar"
            ) from None
    labels: dict[str, str] = {}
    metas: dict[str, dict[str, Any]] = {}
    for sample_id, fields in samples.items():
        if sample_id not in members:
            rejected.append(SkippedRecord(sample_id, "sample has no image member"))
            continue
        label, meta = _label_of(fields)
        if not label:
            rejected.append(SkippedRecord(sample_id, "sample has no label (.cls, .txt or json)"))
            continue
        labels[sample_id], metas[sample_id] = label, meta
    if class_names is not None and all(v.isdigit() for v in labels.values()):
        labels = {k: class_names[int(v)] for k, v in labels.items()}
    names = list(class_names) if class_names is not None else sorted(set(labels.values()))
    index = {n: i for i, n in enumerate(names)}
    given = [str(metas[i].get("split", "")) for i in labels]
    splits = normalise_splits(given, f"WebDataset {pattern}")
    records = [
        Record(
            id=sample_id,
            label=index[label],
            split=split,
            source=sample_id,
            meta=metas[sample_id],
            group=str(metas[sample_id][group_column]) if group_column else None,
        )
        for (sample_id, label), split in zip(labels.items(), splits, strict=True)
    ]
    options = FileOptions(
        name or shards[0].parent.name, modality, prompts, test_fraction, val_fraction, seed
    )
    described = finish_records(records, names, options=options, problems=[])
    return ShardDataset(
        shards,
        {r.id: members[r.id] for r in described.records},
        fingerprint_mode=fingerprint_mode,
        problems=described.problems,
        group_column=group_column,
        rejected=rejected,
        **described.dataset_args(),
    )
