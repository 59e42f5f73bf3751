"""Stable content fingerprints (the cache keys of features and results)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal content gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(*parts: Any, length: int = 16) -> str:
    """SHA-256 of the stable JSON of ``parts``, as a short hex string."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else stable_json(part).encode()
        digest.update(len(data).to_bytes(8, "little"))  # length prefix: no ambiguous joins
        digest.update(data)
    return digest.hexdigest()[:length]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex), read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
