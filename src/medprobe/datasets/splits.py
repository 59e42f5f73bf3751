"""Deterministic stratified splits for data that comes without one."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace

from medprobe.datasets.base import SPLITS, Record
from medprobe.errors import MedprobeError

#: Split spellings data sources use, normalised (after stripping and lower-casing).
SPLIT_ALIASES = {
    "training": "train",
    "validation": "val",
    "valid": "val",
    "dev": "val",
    "testing": "test",
}


def spreadsheet_rows(indices: Sequence[int]) -> str:
    """Row numbers as a user sees them in a spreadsheet (header = row 1)."""
    shown = ", ".join(str(i + 2) for i in indices[:5])
    return shown + (f" and {len(indices) - 5} more" if len(indices) > 5 else "")


def normalise_splits(values: Sequence[str], source: str) -> list[str]:
    """Each record's split, normalised (case, spaces, ``validation`` -> ``val``); all empty
    means the source has none. Anything else, or splits on some records only, is an error
    naming the rows."""
    normal = [SPLIT_ALIASES.get(v.strip().lower(), v.strip().lower()) for v in values]
    bad = [i for i, v in enumerate(normal) if v not in (*SPLITS, "")]
    if bad:
        found = sorted({values[i] for i in bad})
        raise MedprobeError(
            f"{source}: split values {found} (rows {spreadsheet_rows(bad)}) are not train, val "
            "or test"
        )
    missing = [i for i, v in enumerate(normal) if not v]
    if missing and len(missing) < len(normal):
        raise MedprobeError(
            f"{source}: rows {spreadsheet_rows(missing)} have no split while others do; give "
            "every row a split, or none"
        )
    return normal


def _order_key(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(
    records: Sequence[Record],
    *,
    test_fraction: float = 0.3,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> list[Record]:
    """Give every record a train/val/test split, stratified by label.

    Within a class, records are ordered by a hash of (seed, id), so the split of an image does not
    change when other images are added or removed, and it is the same on every machine. Each
    class with at least 2 images keeps at least one image in train and one in test.

    Records with a ``group`` (patient, lesion) are split by group: a group goes whole to one
    side. Groups are stratified by their most common label and ordered by a hash of
    (seed, group); within a class, groups go to test (then val) until that side holds its
    share of the class's images.
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 - test_fraction:
        raise ValueError("need 0 < test_fraction < 1 and 0 <= val_fraction < 1 - test_fraction")
    members: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        members[record.id if record.group is None else f"group:{record.group}"].append(record)
    by_class: dict[int, list[str]] = defaultdict(list)
    for unit, items in members.items():
        label = Counter(r.label for r in items).most_common(1)[0][0]
        by_class[label].append(unit)
    split_of: dict[str, str] = {}
    for units in by_class.values():
        ordered = sorted(units, key=lambda u: _order_key(seed, u.removeprefix("group:")))
        sizes = [len(members[u]) for u in ordered]
        n = sum(sizes)
        n_test = min(max(round(n * test_fraction), 1), n - 1) if len(ordered) >= 2 else 0
        n_val = min(round(n * val_fraction), n - n_test - 1) if len(ordered) >= 3 else 0
        taken = 0
        for unit, size in zip(ordered, sizes, strict=True):
            # a unit goes to test while test is short of its share (at least one unit each side)
            if taken < n_test and unit != ordered[-1]:
                side = "test"
            elif taken < n_test + n_val and unit != ordered[-1]:
                side = "val"
            else:
                side = "train"
            split_of[unit] = side
            taken += size
    return [
        replace(r, split=split_of[r.id if r.group is None else f"group:{r.group}"]) for r in records
    ]


def stratified_sample(records: Sequence[Record], limit: int, seed: int = 0) -> list[Record]:
    """At most ``limit`` records, each class in proportion (at least one each), chosen by a
    hash of (seed, id): deterministic, and the same records whatever else the dataset holds.
    All of them when there are no more than ``limit``."""
    if len(records) <= limit:
        return list(records)
    by_class: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        by_class[record.label].append(record)
    chosen: list[Record] = []
    for members in by_class.values():
        take = max(1, round(len(members) * limit / len(records)))
        chosen += sorted(members, key=lambda r: _order_key(seed, r.id))[:take]
    return chosen
