"""Content-addressed, resumable, atomic feature store.

Layout: ``ROOT/<key[:2]>/<key>/`` with ``manifest.json`` (provenance and progress), shards
``part-<start>.npz`` written as extraction goes (temp file + rename, each with a SHA-256 in the
manifest), and after completion one memory-mappable ``features.npy`` plus ``index.npz`` (ids,
labels, splits). The key is a fingerprint of everything that determines the features, so a
changed image, revision, preprocessing or overlay never reuses stale features, and nothing is
computed twice. A file lock per entry makes concurrent runs on one key safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from medprobe.atomic import atomic_write
from medprobe.errors import MedprobeError
from medprobe.features.featureset import FeatureSet, SkippedRecord

FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """The feature store when none is named: ``$MEDPROBE_CACHE`` or ``~/.cache/medprobe``."""
    return Path(os.environ.get("MEDPROBE_CACHE", "~/.cache/medprobe")).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda h: h.write(json.dumps(data, indent=1, default=str).encode()))


@dataclass(frozen=True)
class Shard:
    """One written slice of records ``[start, stop)`` of the dataset (bad ones left out)."""

    start: int
    stop: int
    file: str
    sha256: str


class Entry:
    """One cache entry (one key). Use :meth:`locked` around reads and writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest_path = path / "manifest.json"

    @contextmanager
    def locked(self, timeout: float = -1) -> Iterator[Entry]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=timeout):
            self.path.mkdir(exist_ok=True)
            yield self

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            return {}
        return json.loads(self.manifest_path.read_text())

    @property
    def complete(self) -> bool:
        return bool(self.manifest().get("complete"))

    def start(self, info: dict[str, Any]) -> dict[str, Any]:
        """Begin (or resume) the entry; an entry started for other content is reset."""
        manifest = self.manifest()
        if manifest.get("info") != json.loads(json.dumps(info, default=str)):
            for child in self.path.iterdir():
                child.unlink() if child.is_file() else shutil.rmtree(child)
            manifest = {"format": FORMAT_VERSION, "info": info, "shards": [], "complete": False}
            _write_json(self.manifest_path, manifest)
        return manifest

    def shards(self) -> list[Shard]:
        return [Shard(**s) for s in self.manifest().get("shards", [])]

    def add_shard(self, start: int, stop: int, arrays: dict[str, np.ndarray]) -> None:
        """Write records ``[start, stop)``; the manifest only names it once it is on disk."""
        name = f"part-{start:09d}.npz"
        atomic_write(self.path / name, lambda h: np.savez(h, **arrays))
        manifest = self.manifest()
        manifest["shards"].append(
            {"start": start, "stop": stop, "file": name, "sha256": _sha256(self.path / name)}
        )
        _write_json(self.manifest_path, manifest)

    def finish(self, dtype: str, extra: dict[str, Any]) -> None:
        """Consolidate shards into one memory-mappable array, streaming (bounded memory)."""
        shards = self.shards()
        parts = [np.load(self.path / s.file, allow_pickle=False) for s in shards]
        n = sum(len(p["ids"]) for p in parts)
        dim = next((p["features"].shape[1] for p in parts if len(p["ids"])), 0)
        tmp = self.path / ".features.npy.tmp"
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, dim))
        row = 0
        for part in parts:
            count = len(part["ids"])
            out[row : row + count] = part["features"]
            row += count
        out.flush()
        del out
        os.replace(tmp, self.path / "features.npy")
        index = {k: np.concatenate([p[k] for p in parts]) for k in ("ids", "labels", "splits")}
        skipped = [
            {"id": str(i), "reason": str(r)}
            for p in parts
            for i, r in zip(p["skipped_ids"], p["skipped_reasons"], strict=True)
        ]
        atomic_write(self.path / "index.npz", lambda h: np.savez(h, **index))
        manifest = self.manifest()
        manifest.update(
            complete=True,
            n=n,
            dim=dim,
            dtype=dtype,
            skipped=skipped,
            **extra,
            files={f: _sha256(self.path / f) for f in ("features.npy", "index.npz")},
        )
        _write_json(self.manifest_path, manifest)
        for shard in shards:
            (self.path / shard.file).unlink(missing_ok=True)

    def load(self) -> FeatureSet:
        """The finished entry as a FeatureSet whose features are memory-mapped from disk."""
        manifest = self.manifest()
        index = np.load(self.path / "index.npz", allow_pickle=False)
        info = manifest["info"]
        return FeatureSet(
            features=np.load(self.path / "features.npy", mmap_mode="r"),
            labels=index["labels"],
            ids=index["ids"],
            splits=index["splits"],
            class_names=info["class_names"],
            encoder=info["encoder"],
            dataset=info["dataset"],
            skipped=tuple(SkippedRecord(**s) for s in manifest["skipped"]),
            meta={
                **info.get("meta", {}),
                "cache_key": self.path.name,
                "cache_path": str(self.path),
            },
        )


class FeatureStore:
    """A folder of entries; ``FeatureStore("~/.cache/medprobe")``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def entry(self, key: str) -> Entry:
        return Entry(self.root / key[:2] / key)

    def find(self, prefix: str) -> Entry:
        """The entry whose key starts with ``prefix`` (as ``git`` resolves short hashes)."""
        matches = [e for e in self.entries() if e.path.name.startswith(prefix)]
        if len(matches) != 1:
            found = "no" if not matches else f"{len(matches)}"
            raise MedprobeError(f"{found} cache entries match {prefix!r} in {self.root}")
        return matches[0]

    def entries(self) -> list[Entry]:
        if not self.root.is_dir():
            return []
        return sorted(
            (
                Entry(p)
                for p in self.root.glob("*/*")
                if p.is_dir() and (p / "manifest.json").is_file()
            ),
            key=lambda e: e.path.name,
        )

    def remove(self, entry: Entry) -> None:
        with entry.locked():
            shutil.rmtree(entry.path)
        Path(str(entry.path) + ".lock").unlink(missing_ok=True)

    def verify(self, entry: Entry) -> list[str]:
        """Problems found (empty when every file matches its recorded SHA-256)."""
        manifest = entry.manifest()
        recorded = (
            manifest.get("files")
            if manifest.get("complete")
            else {s["file"]: s["sha256"] for s in manifest.get("shards", [])}
        )
        problems = []
        for name, digest in (recorded or {}).items():
            path = entry.path / name
            if not path.is_file():
                problems.append(f"{name}: missing")
            elif _sha256(path) != digest:
                problems.append(f"{name}: checksum mismatch (corrupted)")
        return problems
