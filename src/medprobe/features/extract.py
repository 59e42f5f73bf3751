"""Extraction: dataset -> encoder -> FeatureSet, batched, with parallel image decoding."""

from __future__ import annotations

import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from medprobe.datasets.base import Dataset
from medprobe.encoders.base import Encoder
from medprobe.errors import BadImageError, MedprobeError
from medprobe.features.featureset import FeatureSet, SkippedRecord
from medprobe.progress import optional_progress


class _Preprocessed(TorchDataset):
    """Loads and preprocesses one record; bad images become a reason instead of an exception."""

    def __init__(self, dataset: Dataset, encoder: Encoder) -> None:
        self.dataset = dataset
        self.encoder = encoder

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str]:
        record = self.dataset.records[index]
        try:
            return index, self.encoder.preprocess(self.dataset.load_image(record)), ""
        except BadImageError as exc:
            return index, None, str(exc)


def _collate(items: list[tuple[int, torch.Tensor | None, str]]):
    return items


def extract(
    encoder: Encoder,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: Progress | None = None,
    show_progress: bool = True,
) -> FeatureSet:
    """Features of every usable image of ``dataset``; unusable images are listed in ``skipped``.

    Encoders that ``requires_fit`` (e.g. pixels + PCA) are fitted on the training split first.
    Progress goes to ``progress`` when given (a study's shared display), else to its own bar.
    """
    loader = DataLoader(
        _Preprocessed(dataset, encoder),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    kept: list[int] = []
    skipped: list[SkippedRecord] = []
    tensors: list[torch.Tensor] = []  # only held when the encoder must be fitted first
    chunks: list[np.ndarray] = []
    with optional_progress(progress, show_progress) as bar:
        task = bar.add_task(f"{encoder.name} on {dataset.name}", total=len(dataset))
        for items in loader:
            good = [(i, t) for i, t, _ in items if t is not None]
            skipped += [
                SkippedRecord(dataset.records[i].id, why) for i, t, why in items if t is None
            ]
            if good:
                kept += [i for i, _ in good]
                batch = torch.stack([t for _, t in good])
                if encoder.requires_fit:
                    tensors.append(batch)
                else:
                    chunks.append(encoder.encode_images(batch))
            bar.advance(task, len(items))
    if not kept:
        raise MedprobeError(f"no usable image in dataset {dataset.name!r}")
    records = [dataset.records[i] for i in kept]
    splits = np.array([r.split for r in records])
    if encoder.requires_fit:
        everything = torch.cat(tensors)
        train = splits == "train"
        encoder.fit(everything[train] if train.any() else everything)
        chunks = [encoder.encode_images(everything)]
    features = np.concatenate(chunks).astype(np.float32, copy=False)
    if features.shape[1] != encoder.spec.embed_dim:
        raise MedprobeError(
            f"{encoder.name} produced {features.shape[1]}-d features but its spec says "
            f"{encoder.spec.embed_dim}; the weights do not match the spec"
        )
    return FeatureSet(
        features=features,
        labels=np.array([r.label for r in records], dtype=np.int64),
        ids=np.array([r.id for r in records]),
        splits=splits,
        class_names=list(dataset.class_names),
        encoder=encoder.name,
        dataset=dataset.name,
        skipped=tuple(skipped),
        meta={
            "encoder_spec": encoder.spec.model_dump(mode="json"),
            "encoder_fingerprint": encoder.fingerprint(),
            "dataset_fingerprint": dataset.fingerprint(),
            "modality": dataset.modality,
        },
    )
