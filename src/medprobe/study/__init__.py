"""Studies: a grid of encoders x datasets x analyses, from Python or a YAML file.

Imported lazily: reading and checking a study file must not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Plan": "medprobe.study.runner",
    "run_grid": "medprobe.study.runner",
    "run_models": "medprobe.study.runner",
    "run_study": "medprobe.study.runner",
    "run_unit": "medprobe.study.runner",
    "load_config": "medprobe.study.config",
    "StudyConfig": "medprobe.study.config",
    "compare": "medprobe.study.compare",
    "StudyOutcome": "medprobe.analysis.outcome",
    "View": "medprobe.analysis.outcome",
    "write_outputs": "medprobe.report.outputs",
    "load_outcome": "medprobe.report.outputs",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medprobe.study' has no attribute {name!r}")
