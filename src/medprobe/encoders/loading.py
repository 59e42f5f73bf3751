"""Shared pieces of the library loaders: where weights come from, and clear load errors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from pickle import UnpicklingError
from typing import Any, TypeVar

from safetensors import SafetensorError

from medprobe.encoders.hub import TEXT_CONFIG_FILES, fetch, repo_files, snapshot_revision
from medprobe.encoders.shipped import check_preprocessing
from medprobe.encoders.spec import EncoderSpec
from medprobe.errors import MedprobeError
from medprobe.fingerprint import fingerprint

T = TypeVar("T")


def split_repo(entry: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; no ``@``: no pinned revision."""
    repo, _, rev = entry.partition("@")
    return repo, rev or None


def extra_folders(spec: EncoderSpec) -> dict[str, Path]:
    """Snapshot folders of the spec's extra repositories (text configs, tokenizers), by repo id."""
    folders = {}
    for entry in spec.options.get("extra_repos", ()):  # e.g. BiomedCLIP's text config repo
        repo, rev = split_repo(entry)
        folders[repo] = fetch(spec.name, repo, rev, TEXT_CONFIG_FILES)
    return folders


def weights_folder(spec: EncoderSpec, weights: Path | None) -> tuple[Path, str]:
    """The folder (or file) to load from, and the exact source to record for it: the weights
    folder or hub ``repo@commit``, then ``+ repo@commit`` of each extra repository used."""
    extras = " ".join(
        f"+ {repo}@{snapshot_revision(folder) or 'local'}"
        for repo, folder in extra_folders(spec).items()
    )
    if weights is not None:
        weights = Path(weights).expanduser()
        if not weights.exists():
            raise MedprobeError(f"{spec.name}: weights path {weights} does not exist")
        return weights, " ".join(filter(None, (str(weights.resolve()), extras)))
    if spec.hub_id is None:
        where = spec.options.get("download", "its release")
        raise MedprobeError(
            f"{spec.name} is not on the Hugging Face hub; download it from {where} and pass "
            "the folder with --weights /path (weights: in a study file)"
        )
    repo_type = spec.options.get("repo_type", "model")
    folder = fetch(spec.name, spec.hub_id, spec.revision, repo_files(spec), repo_type)
    check_preprocessing(spec, folder)
    source = f"{spec.hub_id}@{snapshot_revision(folder) or spec.revision or 'main'}"
    return folder, " ".join(filter(None, (source, extras)))


def read_state_dict(path: Path) -> dict[str, Any]:
    """Tensors of a checkpoint file: safetensors, or a pickle read with ``weights_only=True``
    (a ``state_dict`` / ``model`` wrapper and DistributedDataParallel's ``module.`` prefix are
    unwrapped, as open_clip's and the releases' own loaders do)."""
    import torch
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):  # e.g. PMC-CLIP's text_projection_layer.pth: one tensor
        return {"": state}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


#: Buffers that old library versions saved and new ones recompute (deterministic, no weights).
_DERIVED_BUFFERS = ("position_ids", "relative_position_index")


def load_exact(spec: EncoderSpec, module: Any, state: dict[str, Any], source: Path) -> None:
    """``module.load_state_dict(state, strict=True)``, after dropping derived buffers the module
    does not have; a missing or unexpected key is one sentence naming the first few."""
    own = module.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith(_DERIVED_BUFFERS)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise MedprobeError(
            f"{spec.name}: the weights in {source} do not fit the architecture "
            f"({len(missing)} missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. "
            f"{unexpected[:3]})"
        )
    checked_load(spec, source, lambda: module.load_state_dict(state, strict=True))


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
