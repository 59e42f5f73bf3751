"""Where medprobe keeps things when the user names no place."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """The feature store when none is named: ``$MEDPROBE_CACHE`` or ``~/.cache/medprobe``."""
    return Path(os.environ.get("MEDPROBE_CACHE", "~/.cache/medprobe")).expanduser()
