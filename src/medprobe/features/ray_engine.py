"""The Ray engine: the same extraction on Ray Data actors, one per GPU (or per CPU slot).

Actors rebuild the encoder from its recipe (the ``create_encoder`` arguments, device and
precision included), so model weights are loaded where they run instead of being shipped, and an
actor computes exactly what the driver's encoder (and its cache key) says; fitted encoders
(pixels + PCA) are small and are shipped whole. Output order is preserved and re-batched to
the local engine's batch size, so shards and the store format are identical to a local run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from medprobe.datasets.base import Dataset, SkippedRecord
from medprobe.encoders.base import Encoder
from medprobe.encoders.registry import create_encoder
from medprobe.encoders.transforms import stack
from medprobe.errors import BadImageError, MedprobeError


class _RayEncoder:
    """A Ray Data actor: decode, overlay, preprocess and encode a batch of record indices."""

    def __init__(self, encoder: Any, dataset: Dataset, overlay: Any) -> None:
        if isinstance(encoder, dict):
            encoder = create_encoder(**encoder)
        self.encoder, self.dataset, self.overlay = encoder, dataset, overlay

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors, good, errors = [], [], []
        for index in batch["index"].tolist():
            record = self.dataset.records[index]
            try:
                image = self.dataset.load_image(record)
                if self.overlay is not None:
                    image = self.overlay(image, record, index)
                tensors.append(self.encoder.geometry(image))
                good.append(True)
                errors.append("")
            except BadImageError as exc:
                good.append(False)
                errors.append(str(exc))
        dim = self.encoder.spec.embed_dim
        features = np.zeros((len(good), dim), np.float32)
        if tensors:
            batch_in = self.encoder.normalize(stack(tensors))
            features[np.array(good)] = self.encoder.encode_images(batch_in)
        return {
            "index": batch["index"],
            "features": features,
            "ok": np.array(good),
            "error": np.array(errors, dtype=str),
        }


def ray_batches(
    encoder: Encoder, dataset: Dataset, overlay: Any, indices: range, batch_size: int
) -> Iterator[tuple[list[int], np.ndarray | None, list[SkippedRecord]]]:
    """Encoded batches of ``indices`` in order, computed on Ray (initialised locally if needed)."""
    try:
        import ray
    except ImportError:
        raise MedprobeError("the ray engine needs Ray: pip install 'medprobe[ray]'") from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    # A GPU encoder gets one actor per GPU; a CPU one never holds a GPU it would not use.
    gpus = int(ray.cluster_resources().get("GPU", 0)) if encoder.device.type == "cuda" else 0
    shipped: Any = encoder if encoder.requires_fit else encoder.recipe
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    items = ray.data.from_items([{"index": i} for i in indices])
    results = items.map_batches(
        _RayEncoder,
        fn_constructor_kwargs={"encoder": shipped, "dataset": dataset, "overlay": overlay},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=max(gpus, 1),
        num_gpus=1 if gpus else 0,
    )
    for batch in results.iter_batches(batch_size=batch_size, batch_format="numpy"):
        ok = batch["ok"].astype(bool)
        index = batch["index"].tolist()
        bad = [
            SkippedRecord(dataset.records[i].id, str(e))
            for i, e, good in zip(index, batch["error"], ok, strict=True)
            if not good
        ]
        kept = [i for i, good in zip(index, ok, strict=True) if good]
        yield kept, (batch["features"][ok] if kept else None), bad
