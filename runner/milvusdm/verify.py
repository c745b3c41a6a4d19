"""Proving the target holds what the source has.

Modes, each including the ones before: ``count`` (row count), ``ids`` (every source id is
present; with the count this rules out missing, extra and duplicated rows), ``sample`` (N
random rows' vectors and fields are equal), ``full`` (every row equal). The source is read
again and the target queried by primary key, batch by batch: memory stays O(batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from milvusdm.batch import Batch
from milvusdm.errors import VerificationError
from milvusdm.schema import Column
from milvusdm.sinks import Sink
from milvusdm.sources import Source

LOOKUP_BATCH = 5_000  # ids per target query (Milvus caps a query's result window at 16384)
SAMPLE_SEED = 20_261_128


@dataclass
class Findings:
    checked: int = 0
    compared: int = 0
    missing: list[int | str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    missing_count: int = 0
    differing_count: int = 0

    def note_missing(self, ids: np.ndarray) -> None:
        self.missing_count += len(ids)
        self.missing.extend(ids[: max(0, 5 - len(self.missing))].tolist())

    def note_difference(self, text: str) -> None:
        self.differing_count += 1
        if len(self.differing) < 5:
            self.differing.append(text)


def verify(
    mode: str,
    source: Source,
    sink: Sink,
    bounds: tuple[int, int],
    expected_count: int | None,
    sample_size: int = 1000,
) -> str:
    """Check the target; returns a short description of what was proven, or raises."""
    if mode == "none":
        return "none"
    problems, found_count = [], None
    if expected_count is not None:
        found_count = sink.count()
        if found_count != expected_count:
            difference = found_count - expected_count
            what = "extra or duplicated" if difference > 0 else "missing"
            problems.append(f"holds {found_count} rows, expected {expected_count} ({abs(difference)} {what})")
    if mode == "count":
        _raise_if(problems, sink)
        return f"count ({found_count} rows)" if found_count is not None else "none (count needs the whole target)"
    findings = _compare(mode, source, sink, bounds, sample_size)
    if findings.missing_count:
        examples = ", ".join(map(str, findings.missing))
        problems.append(f"{findings.missing_count} source ids missing (e.g. {examples})")
    if findings.differing_count:
        problems.append(f"{findings.differing_count} rows differ ({'; '.join(findings.differing)})")
    _raise_if(problems, sink)
    counted = f", count {found_count}" if found_count is not None else ""
    compared = f", {findings.compared} rows equal" if mode != "ids" else ""
    return f"{mode} ({findings.checked} ids present{compared}{counted})"


def _raise_if(problems: list[str], sink: Sink) -> None:
    if problems:
        raise VerificationError(
            f"{sink.describe()} does not match the source: {'; '.join(problems)}",
            "inspect the target; rerun with mode overwrite to copy again",
        )


def _sample_positions(mode: str, bounds: tuple[int, int], sample_size: int) -> np.ndarray | None:
    """Sorted source positions whose rows are compared field by field (None: all of them)."""
    start, stop = bounds
    if mode == "full":
        return None
    if mode == "ids":
        return np.empty(0, dtype=np.int64)
    size = min(sample_size, stop - start)
    rng = np.random.default_rng(SAMPLE_SEED)
    return np.sort(rng.choice(np.arange(start, stop), size=size, replace=False))


def _compare(mode: str, source: Source, sink: Sink, bounds: tuple[int, int], sample_size: int) -> Findings:
    findings = Findings()
    sampled = _sample_positions(mode, bounds, sample_size)
    for batch in source.batches(*bounds, LOOKUP_BATCH):
        batch = batch.normalized()
        if sampled is None:
            rows = np.arange(len(batch))
        else:
            lo, hi = np.searchsorted(sampled, [batch.start, batch.stop])
            rows = sampled[lo:hi] - batch.start
        with_data = len(rows) > 0
        found = sink.fetch(batch.ids, with_data=with_data)
        present = np.isin(batch.ids, found.ids)
        findings.checked += int(present.sum())
        if not present.all():
            findings.note_missing(batch.ids[~present])
        if with_data:
            _compare_rows(source.schema.scalars, batch, found, rows[present[rows]], findings)
    return findings


def _compare_rows(columns: tuple[Column, ...], source: Batch, target: Batch, rows: np.ndarray, findings: Findings) -> None:
    where = {pk: i for i, pk in enumerate(target.ids.tolist())}
    keys = source.ids.tolist()
    for row in rows:
        pk = keys[row]
        t = where[pk]
        findings.compared += 1
        if not np.array_equal(source.vectors[row], target.vectors[t]):
            findings.note_difference(f"id {pk}: vector")
            continue
        for column in columns:
            if not column.type.same(source.scalars[column.name][row], target.scalars[column.name][t]):
                findings.note_difference(f"id {pk}: field {column.name}")
                break
