"""Studies: a grid of encoders x datasets x analyses, from Python or a YAML file.

Imported lazily: reading and checking a study file must not pay for torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StudyOutcome", "View", "analyse", "run_grid", "write_outputs"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from medprobe.study import grid

        return getattr(grid, name)
    raise AttributeError(f"module 'medprobe.study' has no attribute {name!r}")
