"""FeatureSet: features of one encoder on one dataset, with everything needed to analyse them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medprobe.datasets.base import SkippedRecord
from medprobe.errors import MedprobeError


@dataclass(frozen=True)
class FeatureSet:
    """Features ``[N, D]`` (float32) aligned with ids, labels and splits.

    ``meta`` carries provenance: the encoder spec, the dataset fingerprint and the cache key.
    """

    features: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    splits: np.ndarray
    class_names: Sequence[str]
    encoder: str
    dataset: str
    skipped: Sequence[SkippedRecord] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    #: the group (patient, lesion) of each image, when the dataset names one
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.features)
        if self.features.ndim != 2:
            raise MedprobeError(f"features must be 2-D [N, D], got shape {self.features.shape}")
        for name in ("labels", "ids", "splits", *(("groups",) if self.groups is not None else ())):
            if len(getattr(self, name)) != n:
                raise MedprobeError(
                    f"{name} has {len(getattr(self, name))} entries for {n} features"
                )

    def __len__(self) -> int:
        return len(self.features)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def subset(self, mask: np.ndarray) -> FeatureSet:
        """The rows selected by a boolean mask or an index array."""
        return replace(
            self,
            features=self.features[mask],
            labels=self.labels[mask],
            ids=self.ids[mask],
            splits=self.splits[mask],
            groups=self.groups[mask] if self.groups is not None else None,
        )

    def split(self, *names: str) -> FeatureSet:
        """The rows whose split is one of ``names``."""
        return self.subset(np.isin(self.splits, names))

    def check_finite(self) -> None:
        """Raise a clear error if any feature is NaN or infinite."""
        # row blocks: a whole-matrix mask is N x D bytes (77 MB at 100k x 768)
        step = 8192
        bad = np.concatenate(
            [
                ~np.isfinite(self.features[i : i + step]).all(axis=1)
                for i in range(0, len(self.features), step)
            ]
            or [np.zeros(0, dtype=bool)]
        )
        if bad.any():
            examples = ", ".join(map(str, self.ids[bad][:3]))
            raise MedprobeError(
                f"{int(bad.sum())} feature vectors of {self.encoder} on {self.dataset} contain "
                f"NaN or inf (e.g. {examples})"
            )
