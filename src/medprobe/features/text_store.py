"""Text embeddings, cached by content: encoder identity + the exact prompt string.

Every prompt is encoded once per encoder identity, however many analyses, templates, class-name
variants or reruns ask for it: a bounded in-process memo serves repeats within a run, and a
store folder (``<feature store>/text/<identity>/``) serves reruns. A store file is an ``.npz``
of the prompts one call encoded (their keys and embeddings) named by the SHA-256 of its own
bytes, so a file is checked against its name before it is served; a damaged one is moved aside
and its prompts are encoded again. Files are written atomically; a read-only store is used
for reading only.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medprobe.atomic import atomic_write
from medprobe.fingerprint import fingerprint
from medprobe.progress import console

if TYPE_CHECKING:
    from medprobe.encoders.base import Encoder

FORMAT_VERSION = 1
#: the folder under a feature store's root that holds text embeddings
TEXT_FOLDER = "text"
_FILE = re.compile(r"^[0-9a-f]{64}\.npz$")
#: prompt embeddings kept in memory across calls (about 5 kB each at D = 1280)
MEMO_SIZE = 50_000
_MEMO: OrderedDict[str, np.ndarray] = OrderedDict()


def text_key(identity: str, text: str) -> str:
    """The cache key of one prompt's embedding under one encoder identity."""
    return fingerprint("text-embedding", FORMAT_VERSION, identity, text, length=32)


def clear_memory() -> None:
    """Forget the in-process memo (the store folder is kept)."""
    _MEMO.clear()


def _remember(key: str, vector: np.ndarray) -> None:
    _MEMO[key] = vector
    _MEMO.move_to_end(key)
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)


class TextEmbeddings:
    """``encode(encoder, texts)``: float32 ``[N, D]`` exactly as ``encoder.encode_texts``
    returns them, each prompt encoded at most once per identity (memo, then ``root``).

    ``root`` is a folder (usually ``FeatureStore.root / "text"``) or None (memory only).
    """

    def __init__(self, root: str | Path | None = None, *, batch_size: int = 64) -> None:
        self.root = Path(root).expanduser() if root is not None else None
        self.batch_size = batch_size
        #: prompts this object had to encode (the rest came from memory or the store)
        self.encoded = 0

    def encode(self, encoder: Encoder, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        identity = encoder.identity()
        keys = [text_key(identity, t) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in _MEMO]
        if missing and self.root is not None:
            self._read(identity, set(missing))
            missing = [k for k in missing if k not in _MEMO]
        if missing:
            wanted = set(missing)
            todo = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k in wanted))
            fresh = self._encode(encoder, todo)
            todo_keys = [text_key(identity, t) for t in todo]
            for key, vector in zip(todo_keys, fresh, strict=True):
                _remember(key, vector)
            if self.root is not None:
                self._write(identity, todo_keys, fresh)
        for key in keys:
            _MEMO.move_to_end(key)
        return np.stack([_MEMO[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def _encode(self, encoder: Encoder, texts: list[str]) -> np.ndarray:
        parts = [
            np.asarray(encoder.encode_texts(texts[i : i + self.batch_size]), dtype=np.float32)
            for i in range(0, len(texts), self.batch_size)
        ]
        self.encoded += len(texts)
        return np.concatenate(parts)

    def _folder(self, identity: str) -> Path:
        assert self.root is not None
        return self.root / identity

    def _read(self, identity: str, wanted: set[str]) -> None:
        folder = self._folder(identity)
        if not folder.is_dir() or folder.is_symlink():
            return
        for path in sorted(folder.iterdir()):
            if not _FILE.match(path.name) or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
                if hashlib.sha256(data).hexdigest() != path.stem:
                    raise ValueError("it does not match its checksum")
                with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                    keys, vectors = arrays["keys"], arrays["embeddings"]
                if len(keys) != len(vectors):
                    raise ValueError("keys and embeddings disagree")
            except (OSError, ValueError, KeyError, EOFError) as exc:
                self._move_aside(path, str(exc))
                continue
            for key, vector in zip(keys.tolist(), vectors, strict=True):
                if key in wanted:
                    _remember(key, vector)

    def _write(self, identity: str, keys: list[str], vectors: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys), embeddings=vectors)
        data = buffer.getvalue()
        folder = self._folder(identity)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{hashlib.sha256(data).hexdigest()}.npz"
            if not path.exists():
                atomic_write(path, lambda h: h.write(data))
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                raise
            console.print(
                f"text embeddings not cached ({exc.strerror}: {folder}); they are kept in "
                "memory for this run",
                highlight=False,
                markup=False,
            )

    @staticmethod
    def _move_aside(path: Path, reason: str) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.rename(path, aside)
        except OSError:
            return
        console.print(
            f"cached text embeddings {path.name} are damaged ({reason}); moved to {aside} and "
            "encoding those prompts again",
            highlight=False,
            markup=False,
        )
