"""Prometheus metrics of the operator (``milvusdm operator --metrics-port``), from the CR status
the runners write: per migration its phase, rows, rate and last batch; counters of migrations
started, succeeded and failed; reconcile errors per handler.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from milvusdm.spec import MigrationStatus

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Suspended")
KEY = ("namespace", "name")

REGISTRY = CollectorRegistry()
PHASE = Gauge("milvusdm_migration_phase", "1 for the migration's current phase", [*KEY, "phase"], registry=REGISTRY)
ROWS = Gauge("milvusdm_migration_rows_copied", "Rows copied so far", KEY, registry=REGISTRY)
TOTAL = Gauge("milvusdm_migration_rows_total", "Rows the migration copies", KEY, registry=REGISTRY)
RATE = Gauge(
    "milvusdm_migration_rows_per_second", "Rows per second between the last two reports", KEY, registry=REGISTRY
)
LAST_BATCH = Gauge(
    "milvusdm_migration_last_batch_timestamp_seconds", "When the last batch was committed", KEY, registry=REGISTRY
)
STARTED = Counter("milvusdm_migrations_started", "Migrations that reached Running", registry=REGISTRY)
SUCCEEDED = Counter("milvusdm_migrations_succeeded", "Migrations that reached Succeeded", registry=REGISTRY)
FAILED = Counter("milvusdm_migrations_failed", "Migrations that reached Failed", registry=REGISTRY)
RECONCILE_ERRORS = Counter("milvusdm_reconcile_errors", "Handler runs that raised", ["handler"], registry=REGISTRY)
COUNTERS = {"Running": STARTED, "Succeeded": SUCCEEDED, "Failed": FAILED}


@dataclass(frozen=True)
class Report:
    rows: int
    at: float  # seconds since the epoch of status.lastBatchTime


_last: dict[tuple[str, str], Report] = {}


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)


def seconds(timestamp: str) -> float:
    return datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def rate(previous: Report | None, current: Report) -> float | None:
    """Rows per second between two reports; None when they cannot tell (first, or same instant)."""
    if previous is None or current.at <= previous.at or current.rows < previous.rows:
        return None
    return (current.rows - previous.rows) / (current.at - previous.at)


def observe(namespace: str, name: str, status: MigrationStatus) -> None:
    """Set one migration's gauges from its status."""
    key = (namespace, name)
    for phase in PHASES:
        PHASE.labels(namespace, name, phase).set(1 if status.phase == phase else 0)
    if status.rows_copied is not None:
        ROWS.labels(*key).set(status.rows_copied)
    if status.total_rows is not None:
        TOTAL.labels(*key).set(status.total_rows)
    if status.last_batch_time and status.rows_copied is not None:
        report = Report(status.rows_copied, seconds(status.last_batch_time))
        LAST_BATCH.labels(*key).set(report.at)
        if (per_second := rate(_last.get(key), report)) is not None:
            RATE.labels(*key).set(per_second)
        if key not in _last or report.at > _last[key].at:
            _last[key] = report
    if status.phase in ("Succeeded", "Failed", "Suspended"):
        RATE.labels(*key).set(0)


def forget(namespace: str, name: str) -> None:
    """A deleted migration's series go with it."""
    for phase in PHASES:
        with contextlib.suppress(KeyError):
            PHASE.remove(namespace, name, phase)
    for gauge in (ROWS, TOTAL, RATE, LAST_BATCH):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    _last.pop((namespace, name), None)


def transition(phase: str) -> None:
    """A migration reached ``phase`` (counted once per transition, by the status' one writer)."""
    if phase in COUNTERS:
        COUNTERS[phase].inc()


F = TypeVar("F", bound=Callable[..., Any])


def counted(handler: str) -> Callable[[F], F]:
    """Count the handler's exceptions (kopf retries them) as reconcile errors."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception:
                RECONCILE_ERRORS.labels(handler).inc()
                raise

        return run  # type: ignore[return-value]

    return wrap
