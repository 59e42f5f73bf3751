"""Deterministic stratified splits for data that comes without one."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from medprobe.datasets.base import Record


def _order_key(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


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
    """
    if not 0 < test_fraction < 1 or not 0 <= val_fraction < 1 - test_fraction:
        raise ValueError("need 0 < test_fraction < 1 and 0 <= val_fraction < 1 - test_fraction")
    by_class: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        by_class[record.label].append(record)
    split_of: dict[str, str] = {}
    for members in by_class.values():
        ordered = sorted(members, key=lambda r: _order_key(seed, r.id))
        n = len(ordered)
        n_test = min(max(round(n * test_fraction), 1), n - 1) if n >= 2 else 0
        n_val = min(round(n * val_fraction), n - n_test - 1) if n >= 3 else 0
        for i, record in enumerate(ordered):
            split_of[record.id] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return [replace(r, split=split_of[r.id]) for r in records]
