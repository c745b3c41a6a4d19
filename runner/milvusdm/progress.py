"""Progress for people: a rich bar on a terminal, periodic log lines elsewhere (Jobs, CI)."""

from __future__ import annotations

import logging
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from milvusdm.engine import Summary

log = logging.getLogger("milvusdm.progress")
PHASES = {"finish": "finishing: flush, index, load", "verify": "verifying"}


class RowsPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed or 0
        return Text(f"{speed:,.0f} rows/s")


class ProgressBar:
    """A live bar with rows, rows/s and ETA."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RowsPerSecond(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None  # set when the copy starts

    def started(self, summary: Summary, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("copying", total=summary.total, completed=done)

    def committed(self, done: int) -> None:
        assert self.task is not None, "committed after started"
        self.progress.update(self.task, completed=done)

    def phase(self, name: str) -> None:
        assert self.task is not None, "a phase after started"
        self.progress.update(self.task, description=PHASES[name])

    def finished(self, summary: Summary) -> None:
        self.progress.stop()

    def failed(self, error: BaseException) -> None:
        self.progress.stop()


class ProgressLog:
    """A log line at most every ``interval`` seconds, for logs that are not a terminal."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.total = self.first = self.done = 0
        self.began = self.last = 0.0

    def started(self, summary: Summary, done: int) -> None:
        self.total, self.first = summary.total, done
        self.done = done
        self.began = self.last = time.monotonic()
        resuming = f", resuming after row {done}" if done else ""
        log.info("copying %d rows%s", self.total - done, resuming)

    def committed(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last < self.interval and done < self.total:
            return
        self.last = now
        rate = (done - self.first) / max(now - self.began, 1e-9)
        eta = (self.total - done) / rate if rate else float("inf")
        percent = 100 * done / self.total if self.total else 100
        log.info("copied %d/%d rows (%.0f%%), %.0f rows/s, ETA %.0fs", done, self.total, percent, rate, eta)

    def phase(self, name: str) -> None:
        log.info("%s", PHASES[name])

    def finished(self, summary: Summary) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        log.info("stopped after %d of %d rows", self.done, self.total)
