"""Name -> spec registry and the single factory, :func:`create_encoder`."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from medprobe.encoders.options import BuildOptions, check_precision, resolve_device
from medprobe.encoders.spec import Domain, EncoderSpec
from medprobe.encoders.zoo import BASELINES
from medprobe.encoders.zoo_general import GENERAL
from medprobe.encoders.zoo_medical import MEDICAL
from medprobe.errors import MedprobeError

if TYPE_CHECKING:
    from medprobe.encoders.base import Encoder

# Loaders are imported when first used: listing the zoo must not pay for torch and friends.
_LOADERS: dict[str, str] = {
    "baseline": "medprobe.encoders.baselines:load_baseline",
    "timm": "medprobe.encoders.timm_loader:load_timm",
    "open_clip": "medprobe.encoders.open_clip_loader:load_open_clip",
    "transformers": "medprobe.encoders.transformers_loader:load_transformers",
    "custom": "medprobe.encoders.custom_loader:load_custom",
    "hi-ml-multimodal": "medprobe.encoders.himl_loader:load_hi_ml",
    "conch": "medprobe.encoders.conch_loader:load_conch",
}
LOCAL_PREFIX = "local:"
_SPECS: dict[str, EncoderSpec] = {}
_ALIASES: dict[str, str] = {}


_HUB_PREFIXES = ("hf-hub:", "hf_hub:", "hf://")


def register(spec: EncoderSpec) -> EncoderSpec:
    """Add ``spec`` to the zoo under its name, aliases and hub id (names are case-insensitive:
    ``openai/clip-vit-base-patch16`` or ``hf-hub:microsoft/BiomedCLIP-...`` find their spec)."""
    keys = [spec.name, *spec.aliases]
    if spec.hub_id and spec.hub_id.lower() not in _ALIASES:  # first spec of a repo owns its id
        keys.append(spec.hub_id)
    for key in keys:
        owner = _ALIASES.get(key.lower())
        if owner is not None and owner != spec.name:
            raise ValueError(f"encoder name {key!r} is already used by {owner!r}")
        _ALIASES[key.lower()] = spec.name
    _SPECS[spec.name] = spec
    return spec


def _key(name: str) -> str:
    key = name.strip().lower()
    for prefix in _HUB_PREFIXES:  # what an open_clip or HF user types
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def get_spec(name: str) -> EncoderSpec:
    """The registered spec for ``name``: a zoo name, an alias, or the hub id it loads (with or
    without open_clip's ``hf-hub:``); an unknown name gets the three closest ones."""
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        close = difflib.get_close_matches(_key(name), list(_ALIASES), n=6, cutoff=0.5)
        names = list(dict.fromkeys(_SPECS[_ALIASES[c]].name for c in close))[:3]
        hint = f"did you mean {', '.join(names)}?" if names else "no close match"
        raise MedprobeError(
            f"unknown encoder {name!r}; {hint} (`medprobe models` lists all {len(_SPECS)})"
        )
    return _SPECS[canonical]


def list_specs(domain: Domain | None = None) -> list[EncoderSpec]:
    """All registered specs, optionally of one domain, sorted by name."""
    return sorted(
        (s for s in _SPECS.values() if domain is None or s.domain == domain),
        key=lambda s: s.name,
    )


def create_encoder(
    name_or_spec: str | EncoderSpec,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    weights: str | Path | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    domain: Domain = "unknown",
) -> Encoder:
    """Build an encoder, like ``open_clip.create_model_from_pretrained`` or ``timm.create_model``.

    ``name_or_spec``: a zoo name or alias (``medprobe models``), ``local:/path/to/folder`` (an
    open_clip, transformers or timm checkpoint folder; ``domain`` labels it), or a spec.
    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (the GPU when one is visible);
    ``precision``: ``fp32``, ``bf16`` or ``fp16`` -- the model is built on that device and cast
    to that precision, and both are part of the encoder's identity (so of every cache key).
    Reduced precision runs for real on the CPU too (torch CPU autocast); the numpy baselines
    compute in fp32 only and refuse anything else. ``weights`` points a zoo spec at a local
    folder or file instead of the hub; ``revision`` overrides the spec's hub revision;
    ``trust_remote_code`` allows models that run code from their repository to do so.
    The encoder is immutable: build another one to change any of these.
    """
    if isinstance(name_or_spec, EncoderSpec):
        spec = name_or_spec
    elif name_or_spec.startswith(LOCAL_PREFIX):
        from medprobe.encoders.local import local_spec

        weights = Path(name_or_spec[len(LOCAL_PREFIX) :]).expanduser()
        spec = local_spec(weights, domain=domain)
    else:
        spec = get_spec(name_or_spec)
    if revision is not None:
        spec = spec.model_copy(update={"revision": revision})
    options = BuildOptions(
        device=resolve_device(device),
        precision=check_precision(precision),
        weights=Path(weights) if weights is not None else None,
        trust_remote_code=trust_remote_code,
    )
    module, function = _LOADERS[spec.library].split(":")
    return getattr(importlib.import_module(module), function)(spec, options)


def computes_in(name_or_spec: str | EncoderSpec, precision: str) -> bool:
    """Whether an encoder can compute in ``precision`` (the numpy baselines: fp32 only); a
    study-level precision applies to the models that can."""
    spec = name_or_spec
    if isinstance(spec, str):
        if spec.startswith(LOCAL_PREFIX) or spec.lower() not in _ALIASES:
            return True
        spec = get_spec(spec)
    return precision == "fp32" or spec.library != "baseline"


def _register_all(specs: Iterable[EncoderSpec]) -> None:
    for spec in specs:
        register(spec)


_register_all((*BASELINES, *MEDICAL, *GENERAL))
