"""Write model folders in the exact on-disk layout of the Hugging Face cache.

``models--ORG--NAME/blobs/<sha256>``, ``snapshots/<commit>/<file>`` as relative symlinks to the
blobs, and ``refs/main`` holding the commit: what ``hf download`` leaves behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def put_in_hf_cache(cache: Path, repo_id: str, folder: Path, commit: str | None = None) -> Path:
    """Copy every file of ``folder`` into the cache as ``repo_id`` at ``commit``; returns the
    snapshot folder."""
    commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            shutil.copyfile(path, blob)
        target = snapshot / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(os.path.relpath(blob, target.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def remove_from_hf_cache(cache: Path, repo_id: str) -> None:
    shutil.rmtree(cache / f"models--{repo_id.replace('/', '--')}", ignore_errors=True)
