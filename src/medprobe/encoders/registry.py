"""Name -> spec registry and the single factory, :func:`create_encoder`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from medprobe.encoders.base import Encoder
from medprobe.encoders.baselines import load_baseline
from medprobe.encoders.spec import Domain, EncoderSpec
from medprobe.encoders.timm_loader import load_timm
from medprobe.encoders.zoo import BASELINES
from medprobe.errors import MedprobeError

Loader = Callable[[EncoderSpec, str], Encoder]

_LOADERS: dict[str, Loader] = {"baseline": load_baseline, "timm": load_timm}
_SPECS: dict[str, EncoderSpec] = {}
_ALIASES: dict[str, str] = {}


def register(spec: EncoderSpec) -> EncoderSpec:
    """Add ``spec`` to the zoo under its name and aliases (names are case-insensitive)."""
    for key in (spec.name, *spec.aliases):
        owner = _ALIASES.get(key.lower())
        if owner is not None and owner != spec.name:
            raise ValueError(f"encoder name {key!r} is already used by {owner!r}")
        _ALIASES[key.lower()] = spec.name
    _SPECS[spec.name] = spec
    return spec


def get_spec(name: str) -> EncoderSpec:
    """The registered spec for ``name`` or one of its aliases."""
    canonical = _ALIASES.get(name.lower())
    if canonical is None:
        known = ", ".join(sorted(_SPECS))
        raise MedprobeError(f"unknown encoder {name!r}; known encoders: {known}")
    return _SPECS[canonical]


def list_specs(domain: Domain | None = None) -> list[EncoderSpec]:
    """All registered specs, optionally of one domain, sorted by name."""
    return sorted(
        (s for s in _SPECS.values() if domain is None or s.domain == domain),
        key=lambda s: s.name,
    )


def create_encoder(name_or_spec: str | EncoderSpec, device: str = "cpu") -> Encoder:
    """Build the encoder named ``name_or_spec`` (or described by a spec) on ``device``."""
    spec = name_or_spec if isinstance(name_or_spec, EncoderSpec) else get_spec(name_or_spec)
    return _LOADERS[spec.library](spec, device)


def _register_all(specs: Iterable[EncoderSpec]) -> None:
    for spec in specs:
        register(spec)


_register_all(BASELINES)
