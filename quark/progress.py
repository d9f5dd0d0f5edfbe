"""The progress bar every long-running stage uses: description, bar, rate, ETA and live fields."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, in the task's own unit (docs, steps, tokens)."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "it")
        return Text(f"{task.speed:,.1f} {unit}/s" if task.speed else f"- {unit}/s", style="cyan")


class LazyProgress(Progress):
    """A Progress that shows nothing until its first update.

    Commands open the bar, then validate their arguments inside it; an argument error raised
    before the first unit of work then prints its one error line alone, not after a bar at 0%."""

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live.is_started:
            self.stop()

    def _begin(self) -> None:
        if not self.disable and not self.live.is_started:
            self.start()

    def update(self, *args, **kwargs) -> None:  # type: ignore[override]
        self._begin()
        super().update(*args, **kwargs)

    def advance(self, *args, **kwargs) -> None:  # type: ignore[override]
        self._begin()
        super().advance(*args, **kwargs)


def progress_bar(*, enabled: bool = True, fields: str = "") -> LazyProgress:
    """A rich Progress on stderr, so --json output on stdout stays clean.

    `fields` is a format string over the task's fields (e.g. "loss {task.fields[loss]:.3f}").
    Disabled when `enabled` is false (under --json, or when the caller wants silence).
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    if fields:
        columns.append(TextColumn(fields))
    return LazyProgress(*columns, console=Console(file=sys.stderr), disable=not enabled)
