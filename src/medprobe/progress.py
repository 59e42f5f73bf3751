"""Rich progress bars shared by every long step (generation, extraction, analyses)."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)  # progress, warnings and errors
output = Console()  # what a command produces (tables, paths)


class RateColumn(ProgressColumn):
    """Items per second, so a slow step is visible at a glance (the task's ``unit`` field
    names the items: images unless it says otherwise)."""

    def __init__(self, unit: str = "img") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", self.unit)
        # a study runs well under one pair per second: two decimals there
        digits = ",.1f" if (speed or 0) >= 1 else ".2f"
        rate = format(speed, digits) if speed else "-"
        return Text(f"{rate} {unit}/s", style="progress.data.speed")


def progress_bar(disable: bool = False) -> Progress:
    """A progress display with count, rate and ETA; use as a context manager."""
    return Progress(
        # descriptions hold user names (datasets, models): never parsed as markup
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=False,
    )


@contextmanager
def optional_progress(progress: Progress | None, show: bool = True) -> Iterator[Progress]:
    """Use the caller's progress display, or open (and close) one of our own."""
    if progress is not None:
        yield progress
        return
    with progress_bar(disable=not show) as own:
        yield own


class Stages:
    """Wall time per stage of a run (extraction, analyses, ...), and, with a progress display,
    one line per step while it runs (its name and elapsed time), removed when it ends."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, stage: str, label: str | None = None) -> Iterator[None]:
        task = None
        if self.progress is not None and label is not None:
            task = self.progress.add_task(label, total=None)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            if task is not None:
                self.progress.remove_task(task)

    def summary(self) -> str:
        """``extraction 12.3 s, analyses 4.5 s``, longest first."""
        ordered = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{stage} {_duration(seconds)}" for stage, seconds in ordered)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """Catch library warnings (the user cannot act on them) into a list instead of the
    terminal; each distinct message once."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    found += sorted({f"{w.category.__name__}: {w.message}" for w in caught})
