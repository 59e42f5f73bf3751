"""Layer-wise extraction: every requested tap of an encoder from one forward pass per batch.

Each tap is its own content-addressed store entry. ``final`` has exactly the key
:func:`~medprobe.features.extraction.cache_key` gives today's features, so a store that holds
them serves them as they are (nothing recomputed) and a layer-wise run leaves the entry plain
``extract`` would have written. A block tap's key adds the tap's fingerprint (name, module
path, pooling, width) to that key; block taps are stored in ``layer_dtype`` (float16 by
default: half the disk, and memory-mapped on load). Features stream to the entries shard by
shard (a shard holds ``batch_size x shard_batches`` images of each tap), so memory stays
bounded whatever the dataset size, and a killed run resumes: each entry keeps its finished
shards, the run restarts at the earliest unfinished record, and an entry that is ahead keeps
its shards and takes only the records after them.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from medprobe._version import __version__
from medprobe.datasets.base import Dataset, SkippedRecord
from medprobe.encoders.base import Encoder
from medprobe.encoders.layers import FINAL, LayerSelection, Tap, select_taps
from medprobe.errors import MedprobeError
from medprobe.features.extraction import (
    Decode,
    ExtractJob,
    ImageOverlay,
    _meta,
    cache_key,
    described,
    extract,
    intact,
    served,
)
from medprobe.features.featureset import FeatureSet
from medprobe.features.store import Entry, FeatureStore
from medprobe.fingerprint import fingerprint

_FLOAT16_MAX = float(np.finfo(np.float16).max)


def tap_key(
    encoder: Encoder,
    dataset: Dataset,
    overlay: ImageOverlay | None,
    tap: Tap,
    dtype: str,
    decode: Decode = "fast",
) -> str:
    """The store key of one tap's features: today's key for ``final``; for a block, that key
    (in the tap's storage dtype) plus the tap's fingerprint."""
    key = cache_key(encoder, dataset, overlay, dtype, decode)
    if tap.name == FINAL:
        return key
    return fingerprint("layer", key, tap.fingerprint(), length=24)


def resolve_taps(encoder: Encoder, layers: LayerSelection | tuple[Tap, ...]) -> list[Tap]:
    """The encoder's taps a selection names (``all``, names, ``{every: N}``) or the taps
    themselves, ``final`` always included."""
    if isinstance(layers, tuple) and all(isinstance(t, Tap) for t in layers):
        return select_taps(encoder.layers(), [t.name for t in layers], encoder.name)
    return select_taps(encoder.layers(), layers, encoder.name)


def extract_layers(
    encoder: Encoder,
    dataset: Dataset,
    layers: LayerSelection | tuple[Tap, ...] = "all",
    *,
    overlay: ImageOverlay | None = None,
    cache: str | Path | FeatureStore | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    dtype: str = "float32",
    layer_dtype: str = "float16",
    shard_batches: int = 16,
    engine: str = "local",
    decode: Decode = "fast",
    progress: Progress | None = None,
    show_progress: bool = True,
) -> dict[str, FeatureSet]:
    """Features of ``dataset`` at every selected tap, by tap name (``final`` included and
    identical to :func:`~medprobe.features.extraction.extract`'s with the same arguments).

    ``cache`` as for ``extract`` (without one, every tap is held in memory); ``dtype`` is the
    storage of ``final``, ``layer_dtype`` that of the block taps (``float16`` or ``float32``;
    a block whose values do not fit float16 is an error naming it). Each FeatureSet's
    ``meta`` names its ``layer``, ``layer_depth`` and ``layer_pooling``. Block layers are
    read on the local engine only (with ``engine="ray"``, only ``final`` can be asked for).
    """
    for name, value in (("dtype", dtype), ("layer_dtype", layer_dtype)):
        if value not in {"float32", "float16"}:
            raise MedprobeError(f"{name} must be float32 or float16, got {value!r}")
    taps = resolve_taps(encoder, layers)
    common = {"overlay": overlay, "batch_size": batch_size, "decode": decode, "engine": engine}
    if [t.name for t in taps] == [FINAL]:  # no block to read: plain extraction
        fs = extract(
            encoder,
            dataset,
            cache=cache,
            num_workers=num_workers,
            dtype=dtype,
            shard_batches=shard_batches,
            progress=progress,
            show_progress=show_progress,
            **common,
        )
        return {FINAL: _tapped(fs, taps[0])}
    if batch_size <= 0:
        raise MedprobeError(f"batch size must be positive, got {batch_size}")
    dtypes = {t.name: dtype if t.name == FINAL else layer_dtype for t in taps}
    if engine != "local":
        raise MedprobeError("layer-wise extraction runs on the local engine, not on Ray")
    job = ExtractJob(encoder, dataset, overlay, batch_size, num_workers, engine, batch_size, decode)
    job = replace(job, taps=tuple(taps))
    store = FeatureStore(cache) if isinstance(cache, str | Path) else cache
    if store is None:
        sink = _TapMemorySink(dtypes)
        job = replace(job, shard_size=len(dataset) or 1)
        job.fit_encoder()
        job.run(range(len(dataset)), sink, progress, show_progress)
        return {
            t.name: _tapped(
                described(*sink.result(t.name), encoder, dataset, overlay, {}, t.dim), t
            )
            for t in taps
        }
    entries = {
        t.name: store.entry(tap_key(encoder, dataset, overlay, t, dtypes[t.name], decode))
        for t in taps
    }
    with ExitStack() as locks:
        for name in sorted(entries, key=lambda n: entries[n].key):  # one order: no deadlock
            locks.enter_context(entries[name].locked())
        loaded = {t.name: intact(entries[t.name]) for t in taps}
        missing = [t for t in taps if loaded[t.name] is None]
        if missing:
            done = {
                t.name: entries[t.name].start(_info(encoder, dataset, overlay, t, dtypes[t.name]))
                for t in missing
            }
            start = min(done.values())
            job = replace(job, taps=tuple(missing), shard_size=batch_size * shard_batches)
            job.fit_encoder()
            sink = _TapStoreSink({t.name: entries[t.name] for t in missing}, done, dtypes, dataset)
            job.run(range(start, len(dataset)), sink, progress, show_progress, done=start)
            for t in missing:
                entries[t.name].finish(dtypes[t.name], {"medprobe_version": __version__})
                loaded[t.name] = entries[t.name].load()
        return {
            t.name: _tapped(
                served(
                    entries[t.name],
                    loaded[t.name],
                    encoder,
                    dataset,
                    overlay,
                    None if t.name == FINAL else t.dim,
                ),
                t,
            )
            for t in taps
        }


def _info(encoder, dataset, overlay, tap: Tap, dtype: str) -> dict[str, Any]:
    return {
        "encoder": encoder.name,
        "dataset": dataset.name,
        "dtype": dtype,
        "layer": tap.name,
        "meta": {**_meta(encoder, dataset, overlay), "tap": _describe(tap)},
    }


def _describe(tap: Tap) -> dict[str, Any]:
    return {"layer": tap.name, "module": tap.module, "pooling": tap.pooling, "dim": tap.dim}


def _tapped(fs: FeatureSet, tap: Tap) -> FeatureSet:
    meta = {**fs.meta, "layer": tap.name, "layer_depth": tap.depth, "layer_pooling": tap.pooling}
    return replace(fs, meta=meta)


def _stored(name: str, features: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float16" and features.size and np.abs(features).max() > _FLOAT16_MAX:
        raise MedprobeError(
            f"layer {name} has values beyond float16's range ({np.abs(features).max():.3g}); "
            "store layers in float32 (layer_dtype: float32)"
        )
    return features.astype(dtype)


class _TapMemorySink:
    """Every tap's parts in memory (no cache)."""

    def __init__(self, dtypes: dict[str, str]) -> None:
        self.dtypes, self.parts = dtypes, []

    def write(self, start: int, stop: int, part: dict[str, Any]) -> None:
        features = {n: _stored(n, f, self.dtypes[n]) for n, f in part["features"].items()}
        self.parts.append({**part, "features": features})

    def result(self, name: str):
        ids = np.concatenate([p["ids"] for p in self.parts])
        skipped = [
            SkippedRecord(str(i), str(r))
            for p in self.parts
            for i, r in zip(p["skipped_ids"], p["skipped_reasons"], strict=True)
        ]
        return np.concatenate([p["features"][name] for p in self.parts]), ids, skipped


class _TapStoreSink:
    """Each tap's part to its entry; an entry already past ``start`` (a run stopped between
    two entries' shards, or one with another shard size) gets only the records after it."""

    def __init__(
        self,
        entries: dict[str, Entry],
        done: dict[str, int],
        dtypes: dict[str, str],
        dataset: Dataset,
    ) -> None:
        self.entries, self.done, self.dtypes, self.dataset = entries, done, dtypes, dataset
        self._positions: dict[str, int] | None = None

    def _position(self, record_id: str) -> int:
        if self._positions is None:
            self._positions = {r.id: i for i, r in enumerate(self.dataset.records)}
        return self._positions[record_id]

    def write(self, start: int, stop: int, part: dict[str, Any]) -> None:
        for name, entry in self.entries.items():
            done = self.done[name]
            if stop <= done:
                continue
            keep = part["indices"] >= done
            bad = np.array([self._position(str(i)) >= done for i in part["skipped_ids"]], bool)
            arrays = {
                "features": _stored(name, part["features"][name][keep], self.dtypes[name]),
                "ids": part["ids"][keep],
                "skipped_ids": part["skipped_ids"][bad],
                "skipped_reasons": part["skipped_reasons"][bad],
            }
            entry.add_shard(max(start, done), stop, arrays)
