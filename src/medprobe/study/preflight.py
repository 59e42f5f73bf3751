"""Before any heavy work: is every model's weights and every dataset present?"""

from __future__ import annotations

from pathlib import Path

from medprobe.encoders import get_spec
from medprobe.encoders.hub import hub_cache_dir, offline
from medprobe.errors import MedprobeError
from medprobe.study.config import DatasetEntry, ModelEntry, StudyConfig


def _cached(repo_id: str, revision: str | None) -> bool:
    repo = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"
    if revision:
        return (repo / "snapshots" / revision).is_dir()
    ref = repo / "refs" / "main"
    return ref.is_file() and (repo / "snapshots" / ref.read_text().strip()).is_dir()


def missing_model(model: ModelEntry, download: bool = False) -> str | None:
    """What to download for ``model``, or None when it can be loaded now (or, with
    ``download``, fetched from the hub during the run)."""
    if model.name.startswith("local:"):
        path = Path(model.name[len("local:") :]).expanduser()
        return None if path.exists() else f"{model.name}: folder {path} does not exist"
    try:
        spec = get_spec(model.name)
    except MedprobeError as exc:
        return str(exc)
    if model.weights:
        path = Path(model.weights).expanduser()
        return None if path.exists() else f"{spec.name}: weights {path} do not exist"
    revision = model.revision or spec.revision
    if spec.trust_remote_code and not (model.trust_remote_code and revision):
        return (
            f"{spec.name}: runs remote code; set trust_remote_code: true and a pinned "
            f"revision for {spec.hub_id} in the study file"
        )
    if spec.hub_id is None or _cached(spec.hub_id, revision):
        return None
    if download and not offline():
        return None
    return (
        f"{spec.name}: hf download {spec.hub_id}"
        + (f" --revision {revision}" if revision else "")
        + f"  (into {hub_cache_dir()})"
    )


def missing_dataset(config: StudyConfig, entry: DatasetEntry) -> str | None:
    for field in ("path", "manifest", "medmnist"):
        value = getattr(entry, field)
        if value and not config.resolve(value).exists():
            return f"dataset {entry.name}: {config.resolve(value)} does not exist"
    return None


def preflight(config: StudyConfig, *, download: bool = False) -> list[str]:
    """Everything missing, one line each (empty when the study can run)."""
    problems = [missing_model(m, download) for m in config.models]
    problems += [missing_dataset(config, d) for d in config.datasets]
    if config.text_audit is not None:
        try:
            config.text_audit.build().versions()  # is the detector and its weights installed?
        except MedprobeError as exc:
            problems.append(str(exc))
    return [p for p in problems if p]
