"""Shared pieces of the library loaders: where weights come from, and clear load errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from pickle import UnpicklingError
from typing import TypeVar

from safetensors import SafetensorError

from medprobe.encoders.hub import TEXT_CONFIG_FILES, fetch, snapshot_revision
from medprobe.encoders.shipped import check_preprocessing
from medprobe.encoders.spec import EncoderSpec
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

T = TypeVar("T")


def weights_folder(
    spec: EncoderSpec, weights: Path | None, patterns: Sequence[str]
) -> tuple[Path, str]:
    """The folder (or file) to load from, and the exact source to record for it."""
    if weights is not None:
        weights = Path(weights).expanduser()
        if not weights.exists():
            raise MedprobeError(f"{spec.name}: weights path {weights} does not exist")
        return weights, str(weights.resolve())
    if spec.hub_id is None:
        raise MedprobeError(f"{spec.name} has no hub id; pass weights=/path to its weights")
    folder = fetch(spec.name, spec.hub_id, spec.revision, patterns)
    check_preprocessing(spec, folder)
    for repo in spec.options.get("extra_repos", ()):  # e.g. BiomedCLIP's text config repo
        fetch(spec.name, repo, None, TEXT_CONFIG_FILES)
    return folder, f"{spec.hub_id}@{snapshot_revision(folder) or spec.revision or 'main'}"


_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_digest(path: Path) -> str:
    """Content hash of the weight files under ``path`` (a folder or one file).

    Hub-cache files are symlinks to blobs named by their SHA-256, so they cost nothing; other
    files are hashed once per process (keyed by path, size and mtime).
    """
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    )
    digests = []
    for file in files:
        if file.is_symlink() and file.resolve().parent.name == "blobs":
            digests.append(file.resolve().name)
            continue
        stat = file.stat()
        memo = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if memo not in _DIGESTS:
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 22), b""):
                    digest.update(block)
            _DIGESTS[memo] = digest.hexdigest()
        digests.append(_DIGESTS[memo])
    return fingerprint(digests, length=32)


def checked_load(spec: EncoderSpec, source: Path, build: Callable[[], T]) -> T:
    """Run a library's loader; corrupt or mismatched weights become one sentence naming them."""
    try:
        return build()
    except MedprobeError:
        raise
    except (RuntimeError, ValueError, OSError, KeyError, SafetensorError, UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedprobeError(
            f"{spec.name}: cannot load weights from {source} ({first[:300]})"
        ) from None
