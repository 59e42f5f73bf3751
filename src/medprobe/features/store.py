"""Content-addressed, resumable, atomic feature store that checks what it serves.

Layout: ``ROOT/.medprobe-store`` (the store's marker) and ``ROOT/<key[:2]>/<key>/`` per entry,
with the entry's own marker ``.medprobe-entry``, ``manifest.json`` (provenance and progress),
shards ``part-<start>.npz`` written as extraction goes (temp file + rename, each with a
SHA-256 in the manifest), and after completion one memory-mappable ``features.npy`` plus
``index.npz`` (ids), both with their SHA-256 in the manifest.

Trust rules: the key is a fingerprint of the content only (encoder identity, images, overlay),
so a changed input never reuses stale features and nothing is computed twice. Every file
served is checked against its recorded digest (once per process: SHA-256 runs at about
1 GB/s, 0.25 s for 100k x 768 float32); a damaged or unreadable entry is moved aside
(``<key>.corrupt-<time>``), reported in one line and recomputed, never served. Shards are
checked before they are consolidated. Deletion never follows a symbolic link and only touches
folders that carry the store's marker. Files are created with the user's umask; a read-only
store still serves its complete entries; a full disk gives one clear line and leaves the entry
resumable. A file lock per entry makes concurrent runs on one key safe; a wait says who holds
the lock and gives up after ``lock_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from medprobe.atomic import atomic_write
from medprobe.datasets.base import SkippedRecord
from medprobe.errors import MedprobeError
from medprobe.fingerprint import file_sha256
from medprobe.progress import console

FORMAT_VERSION = 2
STORE_MARKER = ".medprobe-store"
ENTRY_MARKER = ".medprobe-entry"
_KEY = re.compile(r"^[0-9a-f]{24}$")
#: What may sit in a store's root besides entries (older stores had no marker): medprobe's
#: other caches (text detections, text embeddings, numba's compiled UMAP) share the folder.
_ROOT_ITEM = re.compile(
    r"^([0-9a-f]{2}|\.medprobe-store|\.[0-9a-f]{2}.*\.tmp|text-audit|text|numba)$"
)
#: Files an entry owns (the only ones a reset deletes).
_OWNED = re.compile(r"^(manifest\.json|features\.npy|index\.npz|part-\d+\.npz|\..*\.tmp)$")


def default_lock_timeout() -> float:
    """Seconds to wait for another process's lock: ``$MEDPROBE_LOCK_TIMEOUT`` or 6 hours (an
    extraction of a big dataset can hold a lock that long)."""
    return float(os.environ.get("MEDPROBE_LOCK_TIMEOUT", 6 * 3600))


class DamagedEntryError(MedprobeError):
    """An entry whose files do not match what its manifest recorded (or cannot be read)."""


_VERIFIED: set[tuple[str, int, int, int, str]] = set()


def _check(path: Path, digest: str) -> None:
    """Raise :class:`DamagedEntryError` unless ``path`` has SHA-256 ``digest`` (memoised per
    process by path, size, mtime and inode: a rewritten file is checked again)."""
    try:
        stat = path.stat()
    except OSError:
        raise DamagedEntryError(f"{path.name} is missing") from None
    memo = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)
    if memo in _VERIFIED:
        return
    if file_sha256(path) != digest:
        raise DamagedEntryError(f"{path.name} does not match its recorded checksum")
    _VERIFIED.add(memo)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda h: h.write(json.dumps(data, indent=1, default=str).encode()))


def _no_space(exc: OSError, where: Path) -> MedprobeError:
    return MedprobeError(
        f"no space left on the device of the feature store ({where}); free space and run "
        "again: the finished shards are kept and the extraction resumes"
    )


@dataclass(frozen=True)
class Shard:
    """One written slice of records ``[start, stop)`` of the dataset (bad ones left out)."""

    start: int
    stop: int
    file: str
    sha256: str


class Entry:
    """One cache entry (one key). Use :meth:`locked` around reads and writes."""

    def __init__(self, path: Path, lock_timeout: float | None = None) -> None:
        self.path = path
        self.manifest_path = path / "manifest.json"
        self.lock_timeout = default_lock_timeout() if lock_timeout is None else lock_timeout

    @property
    def key(self) -> str:
        return self.path.name

    # -- locking -------------------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[Entry]:
        """Hold the entry's lock (a read-only store is read without one)."""
        lock_path = Path(str(self.path) + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(lock_path))
            self._acquire(lock, lock_path)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            yield self  # read-only: complete entries are immutable, serve them as they are
            return
        try:
            self._own_folder()
            _write_owner(lock_path)
            yield self
        finally:
            lock.release()

    def _acquire(self, lock: FileLock, lock_path: Path) -> None:
        waited, said = 0.0, False
        while True:
            try:
                lock.acquire(timeout=min(5.0, max(self.lock_timeout - waited, 0.01)))
                return
            except Timeout:
                waited += 5.0
                if not said:
                    console.print(
                        f"waiting for feature-store entry {self.key}: locked by "
                        f"{_read_owner(lock_path)} (gives up after {self.lock_timeout:.0f} s; "
                        "MEDPROBE_LOCK_TIMEOUT sets it)",
                        highlight=False,
                        markup=False,
                    )
                    said = True
                if waited >= self.lock_timeout:
                    raise MedprobeError(
                        f"feature-store entry {self.key} is still locked by "
                        f"{_read_owner(lock_path)} after {self.lock_timeout:.0f} s; if that "
                        f"process is gone, delete {lock_path}"
                    ) from None

    def _own_folder(self) -> None:
        """Make ``path`` a real folder of ours: a symbolic link (or a file) there is moved
        aside, never written through."""
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_dir()):
            self.move_aside("not a folder of the store (a link or a file)")
        self.path.mkdir(exist_ok=True)
        if not (self.path / ENTRY_MARKER).is_file():  # new, or made by an older medprobe
            (self.path / ENTRY_MARKER).write_text(f"{FORMAT_VERSION}\n")

    # -- reading -------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest, or {} when there is none yet; unreadable -> DamagedEntryError."""
        if not self.manifest_path.is_file():
            return {}
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise DamagedEntryError(f"manifest.json cannot be read ({exc})") from None
        if not isinstance(data, dict):
            raise DamagedEntryError("manifest.json is not a JSON object")
        return data

    @property
    def complete(self) -> bool:
        return bool(self.manifest().get("complete"))

    def shards(self) -> list[Shard]:
        return [Shard(**s) for s in self.manifest().get("shards", [])]

    def load(self) -> tuple[np.ndarray, np.ndarray, list[SkippedRecord]]:
        """The finished entry's verified ``(features (memory-mapped), ids, skipped)``;
        any damage is a :class:`DamagedEntryError`."""
        manifest = self.manifest()
        try:
            files = manifest["files"]
            for name in ("features.npy", "index.npz"):
                _check(self.path / name, files[name])
            features = np.load(self.path / "features.npy", mmap_mode="r")
            with np.load(self.path / "index.npz", allow_pickle=False) as index:
                ids = index["ids"]
            skipped = [SkippedRecord(**s) for s in manifest["skipped"]]
        except DamagedEntryError:
            raise
        except (KeyError, TypeError, ValueError, OSError, EOFError) as exc:
            raise DamagedEntryError(f"unreadable ({type(exc).__name__}: {exc})") from None
        if features.ndim != 2 or len(features) != len(ids) or len(ids) != manifest.get("n"):
            raise DamagedEntryError("features and ids do not agree with the manifest")
        return features, ids, skipped

    def summary(self) -> dict[str, Any]:
        """One line of ``cache ls``: never raises (a damaged entry says so in ``state``)."""
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file()) / 1e6
        row: dict[str, Any] = {"key": self.key, "size_mb": round(size, 2)}
        try:
            manifest = self.manifest()
            info = manifest.get("info", {})
            done = sum(s["stop"] - s["start"] for s in manifest.get("shards", []))
            state = "complete" if manifest.get("complete") else f"partial ({done} done)"
            row.update(
                encoder=info.get("encoder", "-"),
                first_extracted_as=info.get("dataset", "-"),
                images=manifest.get("n"),
                dims=manifest.get("dim"),
                dtype=info.get("dtype", "-"),
                state=state if manifest else "empty",
            )
        except (DamagedEntryError, KeyError, TypeError) as exc:
            row.update(state=f"damaged: {exc}")
        return row

    # -- writing -------------------------------------------------------------------------
    def move_aside(self, reason: str) -> Path:
        """Rename the entry (a link is renamed, not followed) to ``<key>.corrupt-<time>`` and
        say so in one line; the next extraction starts it afresh."""
        aside = self.path.with_name(f"{self.key}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.rename(self.path, aside)
        console.print(
            f"feature-store entry {self.key} is damaged ({reason}); moved to {aside} and "
            "recomputing",
            highlight=False,
            markup=False,
        )
        return aside

    def start(self, info: dict[str, Any]) -> int:
        """Begin (or resume) the entry; returns how many records are already done.

        On resume every shard is checked: the entry keeps its longest run of intact shards
        from the first record on, and drops the rest (they are recomputed). A manifest of
        another format is reset (only the entry's own files are deleted).
        """
        try:
            manifest = self.manifest()
        except DamagedEntryError:
            manifest = {}
        if manifest.get("format") != FORMAT_VERSION:
            for child in self.path.iterdir():
                if _OWNED.match(child.name) and child.is_file() and not child.is_symlink():
                    child.unlink()
            manifest = {"format": FORMAT_VERSION, "info": info, "shards": [], "complete": False}
        intact, expected = [], 0
        for shard in manifest["shards"]:
            try:
                if shard["start"] != expected:
                    break
                _check(self.path / shard["file"], shard["sha256"])
            except DamagedEntryError:
                break
            intact.append(shard)
            expected = shard["stop"]
        dropped = manifest["shards"][len(intact) :]
        if dropped:
            console.print(
                f"feature-store entry {self.key}: {len(dropped)} shard(s) damaged or out of "
                f"order; recomputing from record {expected}",
                highlight=False,
                markup=False,
            )
            for shard in dropped:
                (self.path / shard["file"]).unlink(missing_ok=True)
        manifest.update(shards=intact, complete=False, info=info)
        self._write_manifest(manifest)
        return expected

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        try:
            _write_json(self.manifest_path, manifest)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _no_space(exc, self.path) from None
            raise

    def add_shard(self, start: int, stop: int, arrays: dict[str, np.ndarray]) -> None:
        """Write records ``[start, stop)``; the manifest only names it once it is on disk."""
        name = f"part-{start:09d}.npz"
        try:
            atomic_write(self.path / name, lambda h: np.savez(h, **arrays))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _no_space(exc, self.path) from None
            raise
        manifest = self.manifest()
        manifest["shards"].append(
            {"start": start, "stop": stop, "file": name, "sha256": file_sha256(self.path / name)}
        )
        self._write_manifest(manifest)

    def finish(self, dtype: str, extra: dict[str, Any]) -> None:
        """Consolidate the shards into one memory-mappable array in one streaming pass (one
        shard open at a time; each checked against its digest first; ordinary writes, so a
        full disk is an error, not a crash on a sparse file)."""
        shards = self.shards()
        counts, dim = [], 0
        for shard in shards:
            _check(self.path / shard.file, shard.sha256)
            with np.load(self.path / shard.file, allow_pickle=False) as part:
                counts.append(len(part["ids"]))
                if counts[-1]:
                    dim = part["features"].shape[1]
        n = sum(counts)
        ids, skipped = [], []
        digest = hashlib.sha256()
        try:
            tmp = self.path / ".features.npy.tmp"
            with tmp.open("wb") as out:
                header = {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": (n, dim)}
                head = _npy_header(header)
                out.write(head)
                digest.update(head)
                for shard in shards:
                    with np.load(self.path / shard.file, allow_pickle=False) as part:
                        block = np.ascontiguousarray(part["features"], dtype=dtype).tobytes()
                        out.write(block)
                        digest.update(block)
                        ids.append(part["ids"])
                        skipped += [
                            {"id": str(i), "reason": str(r)}
                            for i, r in zip(
                                part["skipped_ids"], part["skipped_reasons"], strict=True
                            )
                        ]
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path / "features.npy")
            all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=str)
            atomic_write(self.path / "index.npz", lambda h: np.savez(h, ids=all_ids))
        except OSError as exc:
            (self.path / ".features.npy.tmp").unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise _no_space(exc, self.path) from None
            raise
        manifest = self.manifest()
        files = {
            "features.npy": digest.hexdigest(),
            "index.npz": file_sha256(self.path / "index.npz"),
        }
        manifest.update(
            complete=True,
            n=n,
            dim=dim,
            dtype=dtype,
            skipped=skipped,
            **extra,
            files=files,
        )
        self._write_manifest(manifest)
        for shard in shards:
            (self.path / shard.file).unlink(missing_ok=True)


def _npy_header(header: dict[str, Any]) -> bytes:
    """The bytes of a version-1.0 ``.npy`` header (what ``np.save`` writes first)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _write_owner(lock_path: Path) -> None:
    with contextlib.suppress(OSError):  # informational only
        Path(str(lock_path) + ".owner").write_text(
            f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
        )


def _read_owner(lock_path: Path) -> str:
    try:
        return Path(str(lock_path) + ".owner").read_text().strip()
    except OSError:
        return "another process"


class FeatureStore:
    """A folder of entries; ``FeatureStore("~/.cache/medprobe")``."""

    def __init__(self, root: str | Path, *, lock_timeout: float | None = None) -> None:
        self.root = Path(root).expanduser()
        self.lock_timeout = lock_timeout

    def _check_root(self, create: bool) -> None:
        """A folder that is neither empty nor a store is refused (it is someone's data)."""
        marker = self.root / STORE_MARKER
        if marker.is_file():
            return
        if self.root.is_dir():
            foreign = [p.name for p in self.root.iterdir() if not _ROOT_ITEM.match(p.name)]
            if foreign:
                raise MedprobeError(
                    f"{self.root} is not a medprobe feature store (no {STORE_MARKER} marker) and "
                    f"holds other files ({', '.join(sorted(foreign)[:3])}...); give an empty "
                    "folder or an existing store as the cache"
                )
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"medprobe feature store, format {FORMAT_VERSION}\n")
            except OSError as exc:
                if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise

    def entry(self, key: str) -> Entry:
        """The entry of ``key`` (the store is created on first use)."""
        self._check_root(create=True)
        return Entry(self.root / key[:2] / key, self.lock_timeout)

    def find(self, prefix: str) -> Entry:
        """The entry whose key starts with ``prefix`` (as ``git`` resolves short hashes)."""
        matches = [e for e in self.entries() if e.key.startswith(prefix)]
        if len(matches) != 1:
            found = "no" if not matches else f"{len(matches)}"
            raise MedprobeError(f"{found} cache entries match {prefix!r} in {self.root}")
        return matches[0]

    def entries(self) -> list[Entry]:
        """Every entry folder (real folders with the entry marker, named by a key)."""
        if not self.root.is_dir():
            return []
        self._check_root(create=False)
        found = [
            Entry(p, self.lock_timeout)
            for p in self.root.glob("*/*")
            if _KEY.match(p.name)
            and p.parent.name == p.name[:2]
            and not p.is_symlink()
            and (p / ENTRY_MARKER).is_file()
        ]
        return sorted(found, key=lambda e: e.key)

    def remove(self, entry: Entry) -> None:
        """Delete one entry folder: never through a link, never a folder without the marker."""
        if entry.path.is_symlink() or not (entry.path / ENTRY_MARKER).is_file():
            raise MedprobeError(f"{entry.path} is not a medprobe cache entry; nothing removed")
        with entry.locked():
            shutil.rmtree(entry.path)
        for suffix in (".lock", ".lock.owner"):
            Path(str(entry.path) + suffix).unlink(missing_ok=True)

    def verify(self, entry: Entry) -> list[str]:
        """Problems found (empty when every file matches its recorded SHA-256)."""
        try:
            manifest = entry.manifest()
        except DamagedEntryError as exc:
            return [str(exc)]
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
            elif file_sha256(path) != digest:
                problems.append(f"{name}: checksum mismatch (corrupted)")
        return problems
