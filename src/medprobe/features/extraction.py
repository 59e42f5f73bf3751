"""Extraction: dataset (+ overlay) -> encoder -> FeatureSet, batched, cached and resumable.

Images are decoded and preprocessed in DataLoader worker processes while the model runs; with a
cache, features stream to the store shard by shard, so memory stays bounded whatever the
dataset size, a killed run resumes where it stopped, and a finished run is never recomputed.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from medprobe._version import __version__
from medprobe.datasets.base import Dataset, Record, SkippedRecord
from medprobe.datasets.splits import stratified_sample
from medprobe.encoders.base import Encoder
from medprobe.encoders.layers import Tap
from medprobe.encoders.transforms import stack
from medprobe.errors import BadImageError, MedprobeError
from medprobe.features.featureset import FeatureSet
from medprobe.features.ray_engine import ray_batches
from medprobe.features.store import FORMAT_VERSION, DamagedEntryError, Entry, FeatureStore
from medprobe.fingerprint import fingerprint
from medprobe.progress import optional_progress


class ImageOverlay(Protocol):
    """Something drawn on each image before preprocessing (e.g. burned-in text)."""

    def __call__(self, image: Image.Image, record: Record, index: int) -> Image.Image: ...

    def describe(self) -> dict[str, Any]: ...


class _Preprocessed(TorchDataset):
    """Load, overlay and preprocess one record; a bad image becomes a reason, not an exception.

    Holds only the picklable transform, never the model, so workers start cheaply.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable,
        overlay: ImageOverlay | None,
        indices: Sequence[int] | range,
        reduce_to: int | None = None,
    ) -> None:
        self.dataset, self.transform, self.overlay = dataset, transform, overlay
        self.indices, self.reduce_to = indices, reduce_to

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        index = self.indices[i]
        record = self.dataset.records[index]
        try:
            image = self.dataset.load_image(record, self.reduce_to)
            if self.overlay is not None:
                image = self.overlay(image, record, index)
            return index, self.transform(image), ""
        except BadImageError as exc:
            return index, None, str(exc)


def _collate(items):
    return items


Decode = Literal["exact", "fast"]


def decode_size(encoder: Encoder, overlay: ImageOverlay | None, decode: Decode) -> int | None:
    """The smallest side the encoder's resize needs, for reduced-scale JPEG decoding in
    ``fast`` mode (None: decode in full). Overlays are defined on the original pixels (text
    size, mask boxes), so an overlaid extraction always decodes in full."""
    if decode == "exact" or overlay is not None:
        return None
    pre = encoder.spec.preprocessing
    if pre.resize_mode == "resize_center_crop":
        return pre.resize_size or pre.image_size
    return pre.image_size


def fit_indices(encoder: Encoder, dataset: Dataset) -> list[int]:
    """The records a fitted encoder (pixels + PCA) learns from: the training split (every
    record without one), capped at the spec's ``fit_samples`` (default 4096) by a
    deterministic stratified subset, so fitting costs the same at 2,000 or 200,000 images; a
    split under the cap is used whole (results identical to fitting on all of it)."""
    train = [r for r in dataset.records if r.split == "train"] or list(dataset.records)
    limit = int(encoder.spec.options.get("fit_samples", 4096))
    chosen = {r.id for r in stratified_sample(train, limit)}
    return [i for i, r in enumerate(dataset.records) if r.id in chosen]


def choose_workers(decode_seconds: float, model_seconds: float, cores: int) -> int:
    """Decoding workers that maximise throughput, from one batch's measured per-image costs
    (``model_seconds`` on all ``cores``): with ``w`` workers the model keeps ``cores - w``
    threads (at least one; its time grows accordingly), decoding runs ``w`` images at once,
    and together they cannot use more than the cores' CPU time; with none, decoding and the
    model take turns. Up to one worker per core (a decode-bound small model on 2 cores wants
    both decoding), at most 8."""
    cpu_bound = cores / (decode_seconds + cores * model_seconds)

    def rate(w: int) -> float:
        if w == 0:
            return 1 / (decode_seconds + model_seconds)
        threads = max(cores - w, 1)
        return min(w / decode_seconds, threads / (cores * model_seconds), cpu_bound)

    return max(range(min(8, cores) + 1), key=rate)


@contextmanager
def _model_threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(max(count, 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class ExtractJob:
    """One extraction: what is encoded (encoder, dataset, overlay) and how (batches, decoding
    workers, engine, records per stored shard, decode mode).

    ``workers=None`` measures the first batch (decode and model time per image) and picks the
    worker count that keeps both busy (:func:`choose_workers`); decoding then overlaps the
    model. ``decode="fast"`` decodes JPEGs at a reduced scale where the model's resize allows
    (:func:`decode_size`); the mode is part of the feature key. With ``taps``, every batch is
    encoded once into the features of each tap (:meth:`Encoder.encode_layers`) and the sink
    gets one part per tap.
    """

    encoder: Encoder
    dataset: Dataset
    overlay: ImageOverlay | None = None
    batch_size: int = 32
    workers: int | None = 0
    engine: str = "local"
    shard_size: int = 512
    decode: Decode = "exact"
    taps: tuple[Tap, ...] = ()

    def preprocessed(
        self, indices: Sequence[int] | range, workers: int = 0
    ) -> Iterator[tuple[list[int], torch.Tensor | None, list[SkippedRecord]]]:
        """Decoded, overlaid, resized uint8 batches of records ``indices`` (bad ones listed)."""
        workers = workers if len(indices) > self.batch_size else 0
        loader = DataLoader(
            _Preprocessed(
                self.dataset,
                self.encoder.geometry,
                self.overlay,
                indices,
                decode_size(self.encoder, self.overlay, self.decode),
            ),
            batch_size=self.batch_size,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=getattr(self.encoder, "device", torch.device("cpu")).type == "cuda",
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
        )
        for items in loader:
            bad = [
                SkippedRecord(self.dataset.records[i].id, why) for i, t, why in items if t is None
            ]
            good = [(i, t) for i, t, _ in items if t is not None]
            batch = stack([t for _, t in good]) if good else None
            yield [i for i, _ in good], batch, bad

    def encoded(
        self, indices: range
    ) -> Iterator[tuple[list[int], np.ndarray | None, list[SkippedRecord]]]:
        """Feature batches of records ``indices``, in order, on the job's engine."""
        if self.engine == "ray":
            yield from ray_batches(
                self.encoder, self.dataset, self.overlay, indices, self.batch_size
            )
            return
        if self.engine != "local":
            raise MedprobeError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        workers, rest = self.workers, indices
        if workers is None:  # measure one batch in this process, then choose
            head, rest = indices[: self.batch_size], indices[self.batch_size :]
            start = time.perf_counter()
            ((idx, batch, bad),) = list(self.preprocessed(head)) or [([], None, [])]
            decoded = time.perf_counter()
            yield idx, self._encode(batch), bad
            if not len(rest) or not idx:
                workers = 0
            else:
                per_image = 1 / len(idx)
                workers = choose_workers(
                    (decoded - start) * per_image,
                    (time.perf_counter() - decoded) * per_image,
                    os.cpu_count() or 1,
                )
        threads = torch.get_num_threads() - workers if workers else torch.get_num_threads()
        with _model_threads(threads):
            for idx, batch, bad in self.preprocessed(rest, workers):
                yield idx, self._encode(batch), bad

    def _encode(self, batch: torch.Tensor | None) -> np.ndarray | dict[str, np.ndarray] | None:
        if batch is None:
            return None
        if self.taps:
            return self.encoder.encode_layers(self.encoder.normalize(batch), self.taps)
        return self.encoder.encode_images(self.encoder.normalize(batch))

    def fit_encoder(self) -> None:
        """Fit an encoder that ``requires_fit`` on the training split (all images if none),
        or on at most ``fit_indices``' bound of it (a stratified subset: memory stays flat)."""
        if not self.encoder.requires_fit:
            return
        indices = fit_indices(self.encoder, self.dataset)
        batches = (
            self.encoder.normalize(b) for _, b, _ in self.preprocessed(indices) if b is not None
        )
        first = next(batches, None)
        if first is None:
            raise MedprobeError(
                f"no usable training image in dataset {self.dataset.name!r} to fit on"
            )
        self.encoder.fit(itertools.chain([first], batches))  # streamed: memory stays flat

    def run(
        self,
        indices: range,
        sink,
        progress: Progress | None,
        show_progress: bool,
        *,
        done: int = 0,
    ) -> None:
        """Encode ``indices`` and hand the sink one part per ``shard_size`` records, in order."""
        dataset = self.dataset
        dim = {t.name: t.dim for t in self.taps} or self.encoder.spec.embed_dim
        with optional_progress(progress, show_progress) as bar:
            task = bar.add_task(
                f"{self.encoder.name} on {dataset.name}", total=len(dataset), completed=done
            )
            start, kept, chunks, skipped = indices.start, [], [], []
            for idx, features, bad in self.encoded(indices):
                kept += idx
                skipped += bad
                if features is not None:
                    chunks.append(features)
                stop = min(start + self.shard_size, indices.stop)
                if start + len(kept) + len(skipped) >= stop:
                    sink.write(start, stop, _part(dataset, kept, chunks, skipped, dim))
                    start, kept, chunks, skipped = stop, [], [], []
                bar.update(task, completed=start + len(kept) + len(skipped))
            if kept or skipped or (start < indices.stop):
                sink.write(start, indices.stop, _part(dataset, kept, chunks, skipped, dim))
            if progress is not None:  # the caller's display: keep it to the steps running now
                bar.remove_task(task)


def cache_key(
    encoder: Encoder,
    dataset: Dataset,
    overlay: ImageOverlay | None,
    dtype: str,
    decode: Decode = "fast",
) -> str:
    """Everything that determines the features, and nothing that only describes them: encoder
    identity (spec, weights, precision), the images, the overlay (with the labels it writes,
    when it writes class names), the training images a fitted encoder learns from, storage.
    Dataset and class names, modality, prompts and splits are not in it: they come from the
    dataset given at each call."""
    writes_labels = getattr(overlay, "uses_labels", False)
    fitted_on = (
        [dataset.records[i].id for i in fit_indices(encoder, dataset)]
        if encoder.requires_fit
        else None
    )
    return fingerprint(
        "features",
        FORMAT_VERSION,
        encoder.identity(),
        dataset.image_fingerprint(),
        overlay.describe() if overlay is not None else None,
        [dataset.class_names, [r.label for r in dataset.records]] if writes_labels else None,
        fitted_on,
        dtype,
        decode_size(encoder, overlay, decode),
        length=24,
    )


def extract(
    encoder: Encoder,
    dataset: Dataset,
    *,
    overlay: ImageOverlay | None = None,
    cache: str | Path | FeatureStore | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    dtype: str = "float32",
    shard_batches: int = 16,
    engine: str = "local",
    decode: Decode = "fast",
    progress: Progress | None = None,
    show_progress: bool = True,
) -> FeatureSet:
    """Features of every usable image of ``dataset`` (unusable ones are listed in ``skipped``).

    ``cache``: a folder (or :class:`FeatureStore`); with it, results are reused, written in
    shards of ``shard_batches`` batches and resumed after a crash (whatever the batch size of
    the resumed run). ``dtype``: ``float32`` or ``float16`` storage. ``engine="ray"`` runs the
    model on Ray actors (one per GPU). Encoders that ``requires_fit`` (pixels + PCA) are fitted
    on the training split first. Labels, splits, groups, names and prompts of the returned
    FeatureSet are the ``dataset``'s, whatever a stored entry was first extracted as.
    """
    if dtype not in {"float32", "float16"}:
        raise MedprobeError(f"dtype must be float32 or float16, got {dtype!r}")
    if batch_size <= 0:
        raise MedprobeError(f"batch size must be positive, got {batch_size}")
    store = FeatureStore(cache) if isinstance(cache, str | Path) else cache
    job = ExtractJob(encoder, dataset, overlay, batch_size, num_workers, engine, batch_size, decode)
    if store is None:
        job = replace(job, shard_size=len(dataset) or 1)
        job.fit_encoder()
        sink = _MemorySink()
        job.run(range(len(dataset)), sink, progress, show_progress)
        features, ids, skipped = sink.result(dtype)
        return described(features, ids, skipped, encoder, dataset, overlay, {})
    entry = store.entry(cache_key(encoder, dataset, overlay, dtype, decode))
    with entry.locked():
        loaded = intact(entry)
        if loaded is None:
            info = {
                "encoder": encoder.name,
                "dataset": dataset.name,
                "dtype": dtype,
                "meta": _meta(encoder, dataset, overlay),
            }
            done = entry.start(info)
            job = replace(job, shard_size=batch_size * shard_batches)
            job.fit_encoder()
            sink = _StoreSink(entry, dtype)
            job.run(range(done, len(dataset)), sink, progress, show_progress, done=done)
            entry.finish(dtype, {"medprobe_version": __version__})
            loaded = entry.load()
        return served(entry, loaded, encoder, dataset, overlay)


def intact(entry: Entry) -> tuple[np.ndarray, np.ndarray, list[SkippedRecord]] | None:
    """The entry's verified ``(features, ids, skipped)`` if it is finished and intact, else
    None; a damaged entry is moved aside (to be computed again)."""
    try:
        if entry.complete:
            return entry.load()
    except DamagedEntryError as exc:
        entry.move_aside(str(exc))
        entry._own_folder()
    return None


def served(
    entry: Entry,
    loaded: tuple[np.ndarray, np.ndarray, list[SkippedRecord]],
    encoder: Encoder,
    dataset: Dataset,
    overlay: ImageOverlay | None,
    dim: int | None = None,
) -> FeatureSet:
    """The FeatureSet of an entry's loaded contents (see :func:`described`)."""
    where = {"cache_key": entry.key, "cache_path": str(entry.path)}
    return described(*loaded, encoder, dataset, overlay, where, dim)


def _meta(encoder: Encoder, dataset: Dataset, overlay: ImageOverlay | None) -> dict[str, Any]:
    """Provenance: the encoder as built, the data as first extracted (informational)."""
    return {
        "encoder_spec": encoder.spec.model_dump(mode="json"),
        "encoder_identity": encoder.identity(),
        "weights_source": encoder.weights_source,
        "image_fingerprint": dataset.image_fingerprint(),
        "overlay": overlay.describe() if overlay is not None else None,
    }


def described(
    features: np.ndarray,
    ids: np.ndarray,
    skipped: Sequence[SkippedRecord],
    encoder: Encoder,
    dataset: Dataset,
    overlay: ImageOverlay | None,
    where: dict[str, Any],
    dim: int | None = None,
) -> FeatureSet:
    """Features by image id, described by ``dataset`` as given now: its labels, splits,
    groups, class names, name, modality and prompts (a store keys content, never these).
    ``dim``: the width expected (default: the spec's embedding; a layer tap's own)."""
    if len(ids) == 0:
        raise MedprobeError(f"no usable image in dataset {dataset.name!r}")
    if dim is not None and features.shape[1] != dim:
        raise MedprobeError(
            f"{encoder.name} produced {features.shape[1]}-d features at a layer of width {dim}"
        )
    if dim is None and features.shape[1] != encoder.spec.embed_dim:
        raise MedprobeError(
            f"{encoder.name} produced {features.shape[1]}-d features but its spec says "
            f"{encoder.spec.embed_dim}; the weights do not match the spec"
        )
    by_id = {r.id: r for r in dataset.records}
    records = [by_id[str(i)] for i in ids]
    return FeatureSet(
        features=features,
        labels=np.array([r.label for r in records], dtype=np.int64),
        ids=np.asarray(ids),
        splits=np.array([r.split for r in records], dtype=str),
        class_names=list(dataset.class_names),
        encoder=encoder.name,
        dataset=dataset.name,
        skipped=(*skipped, *dataset.rejected),
        meta={
            **_meta(encoder, dataset, overlay),
            **where,
            "dataset_fingerprint": dataset.fingerprint(),
            "modality": dataset.modality,
            "prompts": list(dataset.prompts),
        },
        groups=(np.array([r.group for r in records], dtype=str) if dataset.group_column else None),
    )


class _MemorySink:
    """Collects everything in memory (no cache)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def write(self, start: int, stop: int, part: dict[str, np.ndarray]) -> None:
        self.parts.append(part)

    def result(self, dtype: str) -> tuple[np.ndarray, np.ndarray, list[SkippedRecord]]:
        joined = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        skipped = [
            SkippedRecord(str(i), str(r))
            for i, r in zip(joined["skipped_ids"], joined["skipped_reasons"], strict=True)
        ]
        return joined["features"].astype(dtype), joined["ids"], skipped


class _StoreSink:
    def __init__(self, entry: Entry, dtype: str) -> None:
        self.entry, self.dtype = entry, dtype

    def write(self, start: int, stop: int, part: dict[str, np.ndarray]) -> None:
        part["features"] = part["features"].astype(self.dtype)
        self.entry.add_shard(start, stop, part)


def _joined(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)


def _part(
    dataset: Dataset,
    indices: list[int],
    chunks: list[np.ndarray] | list[dict[str, np.ndarray]],
    skipped: list[SkippedRecord],
    dim: int | dict[str, int],
) -> dict[str, Any]:
    """One shard's arrays; with taps (``dim`` per tap name), ``features`` maps each tap to
    its array and ``indices`` holds the kept records' positions."""
    part: dict[str, Any] = {
        "ids": np.array([dataset.records[i].id for i in indices], dtype=str),
        "skipped_ids": np.array([s.id for s in skipped], dtype=str),
        "skipped_reasons": np.array([s.reason for s in skipped], dtype=str),
    }
    if isinstance(dim, dict):
        by_tap = {name: [c[name] for c in chunks] for name in dim}
        part["features"] = {name: _joined(by_tap[name], d) for name, d in dim.items()}
        part["indices"] = np.array(indices, dtype=np.int64)
    else:
        part["features"] = _joined(chunks, dim)
    return {"features": part.pop("features"), **part}
