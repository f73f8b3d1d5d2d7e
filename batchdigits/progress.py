"""Progress and log output on stderr: a rich bar on a terminal, plain lines otherwise.

Library functions take a :class:`Reporter`; the CLI chooses which one. Results never go
through here: they go to files (or stdout when asked).
"""

from __future__ import annotations

import time
from typing import Protocol


class Reporter(Protocol):
    def start(self, label: str, total: int | None) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def stop(self) -> None: ...
    def log(self, message: str) -> None: ...


class NullReporter:
    """Reports nothing (library default)."""

    def start(self, label: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class PlainReporter:
    """Plain bounded lines for logs and cron: no colour, no carriage returns.

    A line at the start, at most one every ``every`` seconds while running, none per item.
    """

    def __init__(self, console, every: float = 30.0) -> None:
        self.console = console
        self.every = every
        self._label = ""
        self._total: int | None = None
        self._done = 0
        self._t0 = self._last = time.monotonic()

    def start(self, label: str, total: int | None) -> None:
        self._label, self._total, self._done = label, total, 0
        self._t0 = self._last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self._done += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            rate = self._done / max(now - self._t0, 1e-9)
            of = f"/{self._total}" if self._total else ""
            self.log(f"{self._label}: {self._done}{of} ({rate:.0f}/s)")

    def stop(self) -> None:
        pass

    def log(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)


class RichReporter(PlainReporter):
    """A rich progress bar (count, rate, ETA) for interactive terminals."""

    def __init__(self, console, every: float = 30.0) -> None:
        super().__init__(console, every)
        self._progress = None
        self._task = None

    def start(self, label: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.stop()
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, rate="")

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)
            speed = self._progress.tasks[0].speed
            if speed:
                self._progress.update(self._task, rate=f"{speed:,.0f}/s")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def make_reporter(console, quiet: bool = False, every: float = 30.0) -> Reporter:
    """The right reporter for ``console``: rich on a terminal, plain lines (at most one
    per ``every`` seconds) otherwise, nothing when ``quiet``."""
    if quiet:
        return NullReporter()
    if console.is_terminal:
        return RichReporter(console, every)
    return PlainReporter(console, every)
