"""``run.json``: the configuration, library versions, encoder weights and the machine."""

from __future__ import annotations

import importlib.metadata as md
import json
import platform
from pathlib import Path
from typing import Any

import torch

from medprobe.atomic import atomic_write
from medprobe.encoders.base import Encoder

#: Libraries whose versions change the numbers (recorded in run.json).
PACKAGES = (
    "medprobe",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "transformers",
    "huggingface_hub",
    "scikit-learn",
    "numpy",
    "faiss-cpu",
    "openTSNE",
    "umap-learn",
    "pydicom",
    "pillow",
)


def encoder_provenance(encoder: Encoder) -> dict[str, Any]:
    """Identity, weights and spec of one encoder as it was built for the run."""
    return {
        "encoder": encoder.name,
        "identity": encoder.identity(),
        "device": str(encoder.device),
        "precision": encoder.precision,
        "revision": encoder.spec.revision,  # as pinned; the commit used is in "weights"
        "weights": encoder.weights_source,
        "digest": encoder.weights_digest,
        "spec": encoder.spec.model_dump(mode="json"),
    }


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return versions


def write_run_json(
    config: dict[str, Any],
    seed: int,
    out: Path,
    encoders: list[dict[str, Any]],
    run: dict[str, Any],
) -> None:
    """``out/run.json`` (atomic); ``run``: pairs done, time per stage, library warnings."""
    record = {
        "config": config,
        **run,
        "versions": library_versions(),
        "encoders": encoders,
        "seed": seed,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cuda": torch.cuda.is_available(),
            "torch_threads": torch.get_num_threads(),
        },
    }
    atomic_write(
        out / "run.json", lambda h: h.write(json.dumps(record, indent=1, default=str).encode())
    )
