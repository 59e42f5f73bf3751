"""How to get an encoder's weights: one working command (or sentence) per repository.

Used by the study preflight and by ``medprobe models show``: the main repository with exactly
the files medprobe reads (``hf download REPO --revision R --include ...``), each extra repository
(text configs, tokenizers) the same way, how to get access to gated models, and where weights
that are not on the hub come from.
"""

from __future__ import annotations

from medprobe.encoders.hub import (
    TEXT_CONFIG_FILES,
    cached_commit,
    download_command,
    repo_files,
)
from medprobe.encoders.spec import EncoderSpec


def _split(entry: str) -> tuple[str, str | None]:
    repo, _, rev = entry.partition("@")
    return repo, rev or None


def gated_note(spec: EncoderSpec) -> str:
    """The one sentence on getting access to a gated repository."""
    return (
        f"gated: request access at https://huggingface.co/{spec.hub_id} (log in there and "
        "accept its terms), run `hf auth login` once, then"
    )


def missing_downloads(spec: EncoderSpec, revision: str | None = None) -> list[str]:
    """One line per repository of ``spec`` that is not in the local HF cache: the command that
    fetches it (empty when everything is there)."""
    revision = revision or spec.revision
    if spec.hub_id is None:
        if spec.library == "baseline" or spec.options.get("random_init"):
            return []
        where = spec.options.get("download", "its release")
        return [
            f"not on the Hugging Face hub: download it from {where}, unzip it into a folder "
            "and set `weights: FOLDER` for it in the study file (--weights FOLDER)"
        ]
    lines = []
    repo_type = spec.options.get("repo_type", "model")
    if cached_commit(spec.hub_id, revision, repo_type) is None:
        command = f"`{download_command(spec.hub_id, revision, repo_files(spec), repo_type)}`"
        lines.append(f"{gated_note(spec)} {command}" if spec.options.get("gated") else command)
    for entry in spec.options.get("extra_repos", ()):
        repo, rev = _split(entry)
        if cached_commit(repo, rev) is None:
            lines.append(
                f"`{download_command(repo, rev, TEXT_CONFIG_FILES)}` (its text config/tokenizer)"
            )
    return lines


def cached_weights(spec: EncoderSpec, revision: str | None = None) -> str | None:
    """``repo@commit`` of the snapshot the spec would load now, or None when it is not cached."""
    if spec.hub_id is None:
        return None
    commit = cached_commit(
        spec.hub_id, revision or spec.revision, spec.options.get("repo_type", "model")
    )
    return f"{spec.hub_id}@{commit}" if commit else None
