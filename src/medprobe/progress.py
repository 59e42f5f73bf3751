"""Rich progress bars shared by every long step (generation, extraction, analyses)."""

from __future__ import annotations

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
    """Items per second, so a slow step is visible at a glance."""

    def __init__(self, unit: str = "img") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s",
            style="progress.data.speed",
        )


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
