"""A unit: the results of one (model, dataset) pair, stored in the study folder so a rerun
skips finished pairs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medprobe.analysis.outcome import View
from medprobe.analysis.rows import Row, row_from_dict
from medprobe.analysis.suite import UnitInput
from medprobe.fingerprint import fingerprint
from medprobe.report.outputs import write_json


@dataclass
class Unit:
    """Rows, 2-D views, skipped images and test predictions of one (model, dataset) pair.

    ``input`` (features, encoder, row context) is what cross-model analyses use; it is not
    stored, nor are ``timings``.
    """

    key: str
    encoder: str
    dataset: str
    domain: str
    rows: list[Row]
    views: list[View]
    skipped: list[dict[str, str]]
    predictions: dict[str, Any]
    input: UnitInput | None = field(default=None, repr=False, compare=False)
    #: where this run's time went, in seconds (extraction, analyses, 2-D views); not stored
    timings: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "encoder": self.encoder,
            "dataset": self.dataset,
            "domain": self.domain,
            "rows": [asdict(r) for r in self.rows],
            "views": [asdict(v) for v in self.views],
            "skipped": self.skipped,
            "predictions": self.predictions,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unit:
        return cls(
            key=data["key"],
            encoder=data["encoder"],
            dataset=data["dataset"],
            domain=data["domain"],
            rows=[row_from_dict(r) for r in data["rows"]],
            views=[View(**v) for v in data["views"]],
            skipped=data["skipped"],
            predictions=data["predictions"],
        )


class UnitStore:
    """Finished units on disk (``out/units/<model, dataset>.json``)."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "units"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, model: str, dataset: str) -> Path:
        return self.folder / f"{fingerprint(model, dataset)}.json"

    def load(self, model: str, dataset: str, key: str) -> Unit | None:
        """The stored unit, if it was computed for exactly ``key``."""
        path = self.path(model, dataset)
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return Unit.from_json(data) if data.get("key") == key else None

    def save(self, unit: Unit) -> None:
        write_json(self.path(unit.encoder, unit.dataset), unit.to_json())

    def all(self) -> list[Unit]:
        """Every stored unit (what ``medprobe compare`` pairs models with)."""
        return [
            Unit.from_json(json.loads(p.read_text())) for p in sorted(self.folder.glob("*.json"))
        ]
