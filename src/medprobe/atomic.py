"""Atomic file writes: a reader never sees a half-written file, a crash never leaves one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


#: Permissions of new files: what the user's umask allows (``mkstemp`` alone gives 0600,
#: which a second user of a shared store or report folder cannot read).
FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(handle)`` into a temp file in the same folder, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
