"""medprobe: what do the image features of medical and general VLMs capture on lesion data?

The public API is imported lazily, so ``medprobe --help`` does not pay for torch and friends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medprobe._version import __version__

_EXPORTS = {
    "datasets": "medprobe.datasets",
    "open_dataset": "medprobe.datasets",
    "Embedding2D": "medprobe.analysis",
    "FewShotProbe": "medprobe.analysis",
    "Geometry": "medprobe.analysis",
    "KNNProbe": "medprobe.analysis",
    "LinearProbe": "medprobe.analysis",
    "Separability": "medprobe.analysis",
    "ZeroShot": "medprobe.analysis",
    "CrossModel": "medprobe.analysis",
    "overlay_bias": "medprobe.analysis.overlay_bias",
    "read_results": "medprobe.analysis.rows",
    "audit_text": "medprobe.audit",
    "create_encoder": "medprobe.encoders",
    "get_spec": "medprobe.encoders",
    "list_specs": "medprobe.encoders",
    "MedprobeError": "medprobe.errors",
    "FeatureSet": "medprobe.features",
    "FeatureStore": "medprobe.features",
    "extract": "medprobe.features",
    "compare": "medprobe.study.compare",
    "load_config": "medprobe.study.config",
    "run_grid": "medprobe.study.runner",
    "run_study": "medprobe.study.runner",
    "load_outcome": "medprobe.report.outputs",
    "write_outputs": "medprobe.report.outputs",
}

__all__ = [  # noqa: RUF022 - grouped as in _EXPORTS
    "__version__",
    "datasets",
    "open_dataset",
    "Embedding2D",
    "FewShotProbe",
    "Geometry",
    "KNNProbe",
    "LinearProbe",
    "Separability",
    "ZeroShot",
    "CrossModel",
    "overlay_bias",
    "read_results",
    "audit_text",
    "create_encoder",
    "get_spec",
    "list_specs",
    "MedprobeError",
    "FeatureSet",
    "FeatureStore",
    "extract",
    "compare",
    "load_config",
    "run_grid",
    "run_study",
    "load_outcome",
    "write_outputs",
]

if TYPE_CHECKING:
    from medprobe import datasets
    from medprobe.analysis import (
        CrossModel,
        Embedding2D,
        FewShotProbe,
        Geometry,
        KNNProbe,
        LinearProbe,
        Separability,
        ZeroShot,
    )
    from medprobe.analysis.overlay_bias import overlay_bias
    from medprobe.analysis.rows import read_results
    from medprobe.audit import audit_text
    from medprobe.datasets import open_dataset
    from medprobe.encoders import create_encoder, get_spec, list_specs
    from medprobe.errors import MedprobeError
    from medprobe.features import FeatureSet, FeatureStore, extract
    from medprobe.report.outputs import load_outcome, write_outputs
    from medprobe.study.compare import compare
    from medprobe.study.config import load_config
    from medprobe.study.runner import run_grid, run_study


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medprobe' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if name == "datasets" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
