"""Class vocabularies: the expert and lay names (and a few synonyms) of each class.

The bundled vocabulary (``vocabulary.yaml`` next to this module, with its sources) covers the
classes of the modalities medprobe ships prompts for; a dataset's own ``vocabulary`` (a study
file's ``vocabulary:`` entry, or :attr:`medprobe.datasets.Dataset.vocabulary` from Python)
overrides or extends it per class. What the text-side analyses use is
:func:`class_terms` of the dataset as given now (never a stored copy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medprobe.datasets.prompts import canonical_modality
from medprobe.errors import MedprobeError


@dataclass(frozen=True)
class ClassTerms:
    """The names of one class: ``expert`` (clinical), ``lay`` (plain words), ``synonyms``, and
    the keys of the sources they come from (``vocabulary.yaml``'s ``sources`` table)."""

    expert: str | None = None
    lay: str | None = None
    synonyms: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON-able (part of a study unit's key: changed terms are recomputed)."""
        return {
            "expert": self.expert,
            "lay": self.lay,
            "synonyms": list(self.synonyms),
            "sources": list(self.sources),
        }


class TermsOverride(BaseModel):
    """A class's names as a user gives them; any field left out keeps the bundled one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str | None = Field(None, min_length=1)
    lay: str | None = Field(None, min_length=1)
    synonyms: list[str] | None = None


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: list[str] = Field(min_length=1)
    expert: str
    lay: str
    synonyms: list[str] = []
    sources: list[str] = Field(min_length=1)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int
    sources: dict[str, str]
    modalities: dict[str, list[_Entry]]


def normalized(name: str) -> str:
    """``"Lung_ACA"`` -> ``"lung aca"``: how class labels are matched (case, ``_``, ``-``)."""
    return " ".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


@cache
def _bundled() -> _File:
    text = resources.files("medprobe.datasets").joinpath("vocabulary.yaml").read_text()
    data = _File.model_validate(yaml.safe_load(text))
    for modality, entries in data.modalities.items():
        if canonical_modality(modality) != modality:
            raise ValueError(f"vocabulary.yaml: {modality!r} is not a canonical modality name")
        for entry in entries:
            unknown = set(entry.sources) - set(data.sources)
            if unknown:
                raise ValueError(f"vocabulary.yaml: {entry.expert!r} cites unknown {unknown}")
    return data


def vocabulary_sources() -> dict[str, str]:
    """The references the bundled names come from (key -> citation)."""
    return dict(_bundled().sources)


def bundled_modalities() -> tuple[str, ...]:
    """The modalities the bundled vocabulary covers."""
    return tuple(_bundled().modalities)


def bundled_terms(modality: str, class_name: str) -> ClassTerms | None:
    """The bundled names of ``class_name`` in ``modality`` (None when not covered).

    A dataset label is matched against the entries' ``labels`` first, then against their
    expert names, lay names and synonyms, within the dataset's (canonical) modality only: the
    same label means different things in different modalities ("normal", "benign").
    """
    entries = _bundled().modalities.get(canonical_modality(modality), [])
    key = normalized(class_name)
    by_label = [e for e in entries if key in {normalized(x) for x in e.labels}]
    by_name = [e for e in entries if key in {normalized(x) for x in (e.expert, e.lay, *e.synonyms)}]
    found = (by_label or by_name or [None])[0]
    if found is None:
        return None
    return ClassTerms(found.expert, found.lay, tuple(found.synonyms), tuple(found.sources))


def checked_overrides(
    class_names: Sequence[str], overrides: Mapping[str, Any] | None
) -> dict[str, TermsOverride]:
    """A dataset's vocabulary overrides, validated: each names one of its classes."""
    checked: dict[str, TermsOverride] = {}
    for name, value in dict(overrides or {}).items():
        if name not in class_names:
            raise MedprobeError(
                f"the vocabulary names class {name!r}, which the dataset does not have; its "
                f"classes: {', '.join(map(repr, class_names))}"
            )
        if isinstance(value, ClassTerms):
            value = {k: v for k, v in value.describe().items() if k != "sources" and v}
        try:
            checked[name] = TermsOverride.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise MedprobeError(f"vocabulary of class {name!r}: {where}: {first['msg']}") from None
    return checked


def class_terms(
    modality: str, class_names: Sequence[str], overrides: Mapping[str, Any] | None = None
) -> dict[str, ClassTerms]:
    """Every class's names: the bundled ones for ``modality``, with ``overrides`` (class name ->
    :class:`TermsOverride` fields) applied; a class neither covers gets empty terms."""
    checked = checked_overrides(class_names, overrides)
    terms = {}
    for name in class_names:
        found = bundled_terms(modality, name) or ClassTerms()
        given = checked.get(name)
        if given is not None:
            found = replace(
                found,
                expert=given.expert or found.expert,
                lay=given.lay or found.lay,
                synonyms=found.synonyms if given.synonyms is None else tuple(given.synonyms),
                sources=(*found.sources, "user"),
            )
        terms[name] = found
    return terms
