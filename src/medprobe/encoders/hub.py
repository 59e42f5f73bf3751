"""Weights from the Hugging Face hub or its local cache, pinned to a revision.

Every hub-backed encoder is resolved to a local snapshot folder first (``snapshot_download``
with the spec's revision and only the files its library needs), then loaded from that folder
with the library's own loader. One code path serves the hub, the offline cache
(``HF_HUB_OFFLINE=1``) and pinning; the snapshot folder's name is the exact commit used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from medprobe.encoders.spec import EncoderSpec
from medprobe.errors import MedprobeError

OPEN_CLIP_FILES = (
    "open_clip_config.json",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "*.model",
)
TRANSFORMERS_FILES = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer*",
    "vocab*",
    "merges.txt",
    "special_tokens_map.json",
    "*.model",
    "*.py",
)
TIMM_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "open_clip_*")
TEXT_CONFIG_FILES = ("config.json", "tokenizer*", "vocab*", "special_tokens_map.json")
CONCH_FILES = ("pytorch_model.bin", "meta.yaml")
#: CXR-BERT (BioViL's text side), read from the same repository as BioViL's image weights.
CXR_BERT_FILES = ("config.json", "pytorch_model.bin", "vocab.txt", "tokenizer*", "special_tokens*")
_LIBRARY_FILES = {
    "open_clip": OPEN_CLIP_FILES,
    "transformers": TRANSFORMERS_FILES,
    "timm": TIMM_FILES,
    "conch": CONCH_FILES,
}


def repo_files(spec: EncoderSpec) -> tuple[str, ...]:
    """The files (glob patterns) of a spec's hub repository that medprobe reads: the spec's own
    ``options['files']``, BioViL's image file + CXR-BERT, or its library's defaults."""
    if "files" in spec.options:
        return tuple(spec.options["files"])
    if spec.library == "hi-ml-multimodal":
        return (spec.options["image_weights"], *CXR_BERT_FILES)
    return _LIBRARY_FILES.get(spec.library, ())


def cached_commit(repo_id: str, revision: str | None, repo_type: str = "model") -> str | None:
    """The commit of ``repo_id`` at ``revision`` (a commit, a branch or a tag; default main) in
    the local HF cache, or None when that snapshot is not there."""
    repo = hub_cache_dir() / f"{repo_type}s--{repo_id.replace('/', '--')}"
    rev = revision or "main"
    ref = repo / "refs" / rev
    commit = ref.read_text().strip() if ref.is_file() else rev
    return commit if (repo / "snapshots" / commit).is_dir() else None


def hub_cache_dir() -> Path:
    """Where the HF cache lives now (``HF_HUB_CACHE`` / ``HF_HOME``), read at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"} or bool(
        constants.HF_HUB_OFFLINE
    )


def download_command(
    repo_id: str, revision: str | None, patterns: Sequence[str], repo_type: str = "model"
) -> str:
    """The one ``hf download`` command that fetches exactly the files medprobe reads."""
    parts = ["hf download", repo_id]
    if repo_type != "model":
        parts.append(f"--repo-type {repo_type}")
    parts.append(f"--revision {revision or 'main'}")
    parts += [f"--include '{p}'" for p in patterns]
    return " ".join(parts)


def fetch(
    model: str,
    repo_id: str,
    revision: str | None,
    patterns: Sequence[str],
    repo_type: str = "model",
) -> Path:
    """The snapshot folder of ``repo_id`` at ``revision`` holding ``patterns``.

    Failure is one sentence naming the model, what to download and where to put it.
    """
    rev = revision or "main"
    where = hub_cache_dir()
    how = (
        f"download it with `{download_command(repo_id, revision, patterns, repo_type)}` (into "
        f"the HF cache at {where}), or pass a local folder with --weights /path (weights: in a "
        "study file)"
    )
    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=list(patterns),
            cache_dir=where,
            local_files_only=offline(),
        )
    except GatedRepoError:
        raise MedprobeError(
            f"{model}: {repo_id} is gated; accept its terms on the hub, log in with "
            f"`hf auth login`, then {how}"
        ) from None
    except (LocalEntryNotFoundError, FileNotFoundError):
        raise MedprobeError(
            f"{model}: weights of {repo_id} (revision {rev}) are not in the local cache and the "
            f"hub cannot be reached; {how}"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise MedprobeError(
            f"{model}: {repo_id} at revision {rev} does not exist on the hub"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise MedprobeError(f"{model}: could not download {repo_id}: {exc}; {how}") from None
    return Path(path)


def snapshot_revision(folder: Path) -> str | None:
    """The commit hash of an HF-cache snapshot folder (``.../snapshots/<commit>``), if it is one."""
    return folder.name if folder.parent.name == "snapshots" else None
