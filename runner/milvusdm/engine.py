"""The migration engine: check the source, prepare the target, stream, finish, verify.

Reading/converting (one thread) overlaps with ``inflight`` writes; batches commit in
source order, so "rows committed" is always a contiguous prefix of the source — the
position a checkpoint can resume from.
"""

from __future__ import annotations

import logging
import queue
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from milvusdm.batch import Batch
from milvusdm.errors import InputError, VerificationError
from milvusdm.sinks import Sink, open_sink
from milvusdm.sources import Source, open_source
from milvusdm.spec import MilvusMigration

log = logging.getLogger(__name__)
DEFAULT_INFLIGHT = 2


class Observer(Protocol):
    """Progress bars, log lines and CR status writers all watch the same events."""

    def started(self, total: int) -> None: ...

    def committed(self, done: int) -> None: ...

    def finished(self, summary: "Summary") -> None: ...


@dataclass
class Summary:
    name: str
    source: str
    target: str
    rows: int = 0
    total: int = 0
    seconds: float = 0.0
    skipped: bool = False
    verified: str = "none"
    peak_rss_mb: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped, {self.target} already exists (mode skip)"
        notes = "".join(f"; {w}" for w in self.warnings)
        return (
            f"{self.name}: copied {self.rows} rows from {self.source} to {self.target} in {self.seconds:.1f}s "
            f"({self.rows_per_second:,.0f} rows/s); verified: {self.verified}{notes}"
        )

    def as_dict(self) -> dict:
        return asdict(self) | {"rowsPerSecond": round(self.rows_per_second, 1)}


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include a parent's
    memory from before exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_DONE = object()


class _Reader(threading.Thread):
    """Reads and normalises batches ahead of the writers, into a bounded queue."""

    def __init__(self, batches: Iterator[Batch], depth: int) -> None:
        super().__init__(name="milvusdm-reader", daemon=True)
        self.batches = batches
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.cancelled = threading.Event()

    def _put(self, item: object) -> bool:
        while not self.cancelled.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            for batch in self.batches:
                if not self._put(batch.normalized()):
                    return
            self._put(_DONE)
        except BaseException as error:  # handed to the consumer, raised there
            self._put(error)

    def __iter__(self) -> Iterator[Batch]:
        while (item := self.queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item


def stream(
    source: Source,
    sink: Sink,
    start: int,
    stop: int,
    batch_size: int,
    on_commit: Callable[[Batch], None],
    inflight: int = DEFAULT_INFLIGHT,
) -> None:
    """Copy rows ``start..stop`` of the source into the sink."""
    reader = _Reader(source.batches(start, stop, batch_size), depth=inflight)
    pending: deque[tuple[Batch, Future]] = deque()
    reader.start()
    with ThreadPoolExecutor(inflight, thread_name_prefix="milvusdm-writer") as writers:
        try:
            for batch in reader:
                pending.append((batch, writers.submit(sink.write, batch)))
                if len(pending) >= inflight:
                    _commit(pending.popleft(), on_commit)
            while pending:
                _commit(pending.popleft(), on_commit)
        except BaseException:
            _settle(pending, on_commit)
            raise
        finally:
            reader.cancelled.set()
            reader.join()


def _commit(item: tuple[Batch, Future], on_commit: Callable[[Batch], None]) -> None:
    batch, future = item
    future.result()
    on_commit(batch)


def _settle(pending: deque[tuple[Batch, Future]], on_commit: Callable[[Batch], None]) -> None:
    """After a failure: cancel writes not begun, and commit the in-order prefix that did land,
    so rollbacks and checkpoints know about every row written."""
    landed = True
    for batch, future in pending:
        if future.cancel() or not landed:
            landed = False
            continue
        landed = future.exception() is None
        if landed:
            on_commit(batch)
    pending.clear()


def run(migration: MilvusMigration, observers: list[Observer] = (), inflight: int = DEFAULT_INFLIGHT) -> Summary:
    """Run a whole migration; raises a MigrationError subclass on failure."""
    spec = migration.spec
    source, sink = open_source(spec.source), open_sink(spec.target)
    summary = Summary(migration.metadata.name, source.describe(), sink.describe())
    began = time.monotonic()
    try:
        source.open()  # every input check happens here, before the target is touched
        summary.total = source.total
        if source.schema.lossy:
            summary.warnings.append("vectors are decoded approximations of the originals (lossy index)")
        if not sink.prepare(source.schema, resume=False):
            summary.skipped = True
            return summary
        before = sink.count() if spec.verify == "count" and not sink.created else 0
        for observer in observers:
            observer.started(source.total)
        written: list[np.ndarray] = []

        def committed(batch: Batch) -> None:
            summary.rows += len(batch)
            if not sink.created:
                written.append(batch.ids)
            for observer in observers:
                observer.committed(summary.rows)

        try:
            stream(source, sink, 0, source.total, spec.batch_size, committed, inflight)
        except InputError as error:
            _roll_back(sink, written, error)
            raise
        sink.finish()
        summary.verified = verify(spec.verify, sink, expected=before + summary.rows)
    finally:
        summary.seconds = time.monotonic() - began
        sink.close()
        source.close()
        summary.peak_rss_mb = round(peak_rss_mb(), 1)
    for observer in observers:
        observer.finished(summary)
    return summary


def _roll_back(sink: Sink, written: list[np.ndarray], cause: InputError) -> None:
    """Bad data found mid-stream: leave nothing partial behind, or say loudly that we could not."""
    try:
        sink.rollback(written)
    except Exception as error:  # the input error stays the one reported
        log.error("could not undo the partial copy in %s: %s", sink.describe(), error)
        cause.fix += f"; {sink.describe()} still holds {sum(map(len, written))} rows of this run"


def verify(mode: str, sink: Sink, expected: int) -> str:
    if mode == "none":
        return "none"
    found = sink.count()
    if found != expected:
        raise VerificationError(
            f"{sink.describe()} holds {found} rows, expected {expected}",
            "inspect the target; rerun with mode overwrite to start clean",
        )
    return f"count ({found} rows)"
