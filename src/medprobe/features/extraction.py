"""Extraction: dataset (+ overlay) -> encoder -> FeatureSet, batched, cached and resumable.

Images are decoded and preprocessed in DataLoader worker processes while the model runs; with a
cache, features stream to the store shard by shard, so memory stays bounded whatever the
dataset size, a killed run resumes where it stopped, and a finished run is never recomputed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from rich.progress import Progress
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from medprobe._version import __version__
from medprobe.datasets.base import Dataset, Record
from medprobe.encoders.base import Encoder
from medprobe.errors import BadImageError, MedprobeError
from medprobe.features.featureset import FeatureSet, SkippedRecord
from medprobe.features.ray_engine import ray_batches
from medprobe.features.store import FORMAT_VERSION, FeatureStore
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
    ) -> None:
        self.dataset, self.transform, self.overlay, self.indices = (
            dataset,
            transform,
            overlay,
            indices,
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        index = self.indices[i]
        record = self.dataset.records[index]
        try:
            image = self.dataset.load_image(record)
            if self.overlay is not None:
                image = self.overlay(image, record, index)
            return index, self.transform(image), ""
        except BadImageError as exc:
            return index, None, str(exc)


def _collate(items):
    return items


def default_workers() -> int:
    """Decoding workers: all cores but one for the model, at most 8. On two cores or fewer the
    model already uses every core, and a worker only adds contention (measured: slower)."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(8, cores - 1)


@dataclass(frozen=True)
class ExtractJob:
    """One extraction: what is encoded (encoder, dataset, overlay) and how (batches, decoding
    workers, engine, records per stored shard)."""

    encoder: Encoder
    dataset: Dataset
    overlay: ImageOverlay | None = None
    batch_size: int = 32
    workers: int = 0
    engine: str = "local"
    shard_size: int = 512

    def preprocessed(
        self, indices: Sequence[int] | range
    ) -> Iterator[tuple[list[int], torch.Tensor | None, list[SkippedRecord]]]:
        """Decoded, overlaid, resized uint8 batches of records ``indices`` (bad ones listed)."""
        workers = self.workers if len(indices) > self.batch_size else 0
        loader = DataLoader(
            _Preprocessed(self.dataset, self.encoder.geometry, self.overlay, indices),
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
            batch = torch.stack([t for _, t in good]) if good else None
            yield [i for i, _ in good], batch, bad

    def encoded(
        self, indices: range
    ) -> Iterator[tuple[list[int], np.ndarray | None, list[SkippedRecord]]]:
        """Feature batches of records ``indices``, in order, on the job's engine."""
        if self.engine == "ray":
            return ray_batches(self.encoder, self.dataset, self.overlay, indices, self.batch_size)
        if self.engine != "local":
            raise MedprobeError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        encoder = self.encoder
        return (
            (idx, encoder.encode_images(encoder.normalize(b)) if b is not None else None, bad)
            for idx, b, bad in self.preprocessed(indices)
        )

    def fit_encoder(self) -> None:
        """Fit an encoder that ``requires_fit`` on the training split (all images if none)."""
        if not self.encoder.requires_fit:
            return
        train = [i for i, r in enumerate(self.dataset.records) if r.split == "train"]
        indices = train if train else range(len(self.dataset))
        tensors = [b for _, b, _ in self.preprocessed(indices) if b is not None]
        if not tensors:
            raise MedprobeError(
                f"no usable training image in dataset {self.dataset.name!r} to fit on"
            )
        self.encoder.fit(self.encoder.normalize(torch.cat(tensors)))

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
        dataset, dim = self.dataset, self.encoder.spec.embed_dim
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


def cache_key(encoder: Encoder, dataset: Dataset, overlay: ImageOverlay | None, dtype: str) -> str:
    """Everything that determines the features: encoder (spec, weights), data, overlay, format."""
    return fingerprint(
        "features",
        FORMAT_VERSION,
        encoder.identity(),
        dataset.fingerprint(),
        overlay.describe() if overlay is not None else None,
        dtype,
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
    progress: Progress | None = None,
    show_progress: bool = True,
) -> FeatureSet:
    """Features of every usable image of ``dataset`` (unusable ones are listed in ``skipped``).

    ``cache``: a folder (or :class:`FeatureStore`); with it, results are reused, written in
    shards of ``shard_batches`` batches and resumed after a crash. ``dtype``: ``float32`` or
    ``float16`` storage. ``engine="ray"`` runs the model on Ray actors (one per GPU). Encoders
    that ``requires_fit`` (pixels + PCA) are fitted on the training split first.
    """
    if dtype not in {"float32", "float16"}:
        raise MedprobeError(f"dtype must be float32 or float16, got {dtype!r}")
    if batch_size <= 0:
        raise MedprobeError(f"batch size must be positive, got {batch_size}")
    workers = default_workers() if num_workers is None else num_workers
    store = FeatureStore(cache) if isinstance(cache, str | Path) else cache
    job = ExtractJob(encoder, dataset, overlay, batch_size, workers, engine, batch_size)
    if store is None:
        job = replace(job, shard_size=len(dataset) or 1)
        job.fit_encoder()
        sink = _MemorySink()
        job.run(range(len(dataset)), sink, progress, show_progress)
        return _finish_features(sink.result(encoder, dataset, overlay, dtype), encoder)
    entry = store.entry(cache_key(encoder, dataset, overlay, dtype))
    with entry.locked():
        if entry.complete:
            return entry.load()
        info = {
            "encoder": encoder.name,
            "dataset": dataset.name,
            "class_names": dataset.class_names,
            "batch_size": batch_size,
            "dtype": dtype,
            "engine": engine,
            "meta": _meta(encoder, dataset, overlay),
        }
        entry.start(info)
        done = max((s.stop for s in entry.shards()), default=0)
        job = replace(job, shard_size=batch_size * shard_batches)
        job.fit_encoder()
        job.run(
            range(done, len(dataset)), _StoreSink(entry, dtype), progress, show_progress, done=done
        )
        entry.finish(dtype, {"medprobe_version": __version__})
        return _finish_features(entry.load(), encoder)


def _meta(encoder: Encoder, dataset: Dataset, overlay: ImageOverlay | None) -> dict[str, Any]:
    return {
        "encoder_spec": encoder.spec.model_dump(mode="json"),
        "encoder_identity": encoder.identity(),
        "weights_source": encoder.weights_source,
        "dataset_fingerprint": dataset.fingerprint(),
        "modality": dataset.modality,
        "prompts": list(dataset.prompts),
        "overlay": overlay.describe() if overlay is not None else None,
    }


def _finish_features(fs: FeatureSet, encoder: Encoder) -> FeatureSet:
    if len(fs) == 0:
        raise MedprobeError(f"no usable image in dataset {fs.dataset!r}")
    if fs.dim != encoder.spec.embed_dim:
        raise MedprobeError(
            f"{encoder.name} produced {fs.dim}-d features but its spec says "
            f"{encoder.spec.embed_dim}; the weights do not match the spec"
        )
    return fs


class _MemorySink:
    """Collects everything in memory (no cache)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def write(self, start: int, stop: int, part: dict[str, np.ndarray]) -> None:
        self.parts.append(part)

    def result(self, encoder, dataset, overlay, dtype) -> FeatureSet:
        joined = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        return FeatureSet(
            features=joined["features"].astype(dtype),
            labels=joined["labels"],
            ids=joined["ids"],
            splits=joined["splits"],
            class_names=list(dataset.class_names),
            encoder=encoder.name,
            dataset=dataset.name,
            skipped=tuple(
                SkippedRecord(str(i), str(r))
                for i, r in zip(joined["skipped_ids"], joined["skipped_reasons"], strict=True)
            ),
            meta=_meta(encoder, dataset, overlay),
        )


class _StoreSink:
    def __init__(self, entry, dtype: str) -> None:
        self.entry, self.dtype = entry, dtype

    def write(self, start: int, stop: int, part: dict[str, np.ndarray]) -> None:
        part["features"] = part["features"].astype(self.dtype)
        self.entry.add_shard(start, stop, part)


def _part(
    dataset: Dataset,
    indices: list[int],
    chunks: list[np.ndarray],
    skipped: list[SkippedRecord],
    dim: int,
) -> dict[str, np.ndarray]:
    records = [dataset.records[i] for i in indices]
    return {
        "features": np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32),
        "ids": np.array([r.id for r in records], dtype=str),
        "labels": np.array([r.label for r in records], dtype=np.int64),
        "splits": np.array([r.split for r in records], dtype=str),
        "skipped_ids": np.array([s.id for s in skipped], dtype=str),
        "skipped_reasons": np.array([s.reason for s in skipped], dtype=str),
    }
