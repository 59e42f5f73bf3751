"""Before any heavy work: is every model's weights and every dataset present?

Every line says one thing to do: a ``hf download`` command with exactly the files medprobe reads
(one per repository, extra repositories included), how to get access to a gated model, or which
option a remote-code model needs.
"""

from __future__ import annotations

from pathlib import Path

from braceexpand import braceexpand

from medprobe.encoders import get_spec
from medprobe.encoders.downloads import missing_downloads
from medprobe.encoders.hub import offline
from medprobe.errors import MedprobeError
from medprobe.study.config import DatasetEntry, ModelEntry, StudyConfig


def _merged(lines: list[tuple[str, str]]) -> list[str]:
    """``name: what`` lines, one per distinct ``what`` (a repository two models share, e.g. the
    BiomedBERT text config, is one command naming both)."""
    names: dict[str, list[str]] = {}
    for name, what in lines:
        names.setdefault(what, []).append(name)
    return [
        f"{', '.join(dict.fromkeys(n))}: {what}" if any(n) else what for what, n in names.items()
    ]


def missing_model(model: ModelEntry, download: bool = False) -> list[str]:
    """What to do before ``model`` can load, one line each (empty when it can load now, or, with
    ``download``, be fetched from the hub during the run)."""
    if model.name.startswith("local:"):
        path = Path(model.name[len("local:") :]).expanduser()
        return [] if path.exists() else [f"{model.name}: folder {path} does not exist"]
    try:
        spec = get_spec(model.name)
    except MedprobeError as exc:
        return [str(exc)]
    if model.weights:
        path = Path(model.weights).expanduser()
        return [] if path.exists() else [f"{spec.name}: weights {path} do not exist"]
    revision = model.revision or spec.revision
    if spec.trust_remote_code and not (model.trust_remote_code and revision):
        return [
            f"{spec.name}: runs code from {spec.hub_id}; allow it with --trust-remote-code "
            f"{spec.name} and pin it with --revision {spec.name}=<commit of {spec.hub_id}> "
            "(or trust_remote_code: true and revision: in a study file, see `medprobe init`)"
        ]
    if download and not offline():
        return []
    return [f"{spec.name}: {line}" for line in missing_downloads(spec, revision)]


def missing_dataset(config: StudyConfig, entry: DatasetEntry) -> str | None:
    """What of a dataset's files is missing (every shard of a WebDataset pattern)."""
    kind, value = entry.source()
    if kind == "synthetic":
        return None
    path = value.get("path", "") if isinstance(value, dict) else value
    candidates = braceexpand(path) if kind == "webdataset" else [path]
    for candidate in candidates:
        if not config.resolve(candidate).exists():
            return f"dataset {entry.name}: {config.resolve(candidate)} does not exist"
    return None


def preflight(config: StudyConfig, *, download: bool = False) -> list[str]:
    """Everything missing, one line each (empty when the study can run)."""
    pairs = []
    for model in config.models:
        for line in missing_model(model, download):
            name, sep, what = line.partition(": ")
            pairs.append((name, what) if sep else ("", line))
    problems: list[str | None] = list(_merged(pairs))
    problems += [missing_dataset(config, d) for d in config.datasets]
    if config.text_audit is not None:
        try:
            config.text_audit.build().versions()  # is the detector and its weights installed?
        except MedprobeError as exc:
            problems.append(str(exc))
    return [p for p in problems if p]
