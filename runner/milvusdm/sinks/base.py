"""The interface every sink implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np

from milvusdm.batch import Batch
from milvusdm.schema import Schema


class Sink(ABC):
    """Where rows go. ``write`` may be called from several threads at once."""

    created: bool = False  # prepare() made the destination (or its staging copy)
    staging: bool = False  # writes go to a copy that commit() swaps in
    on_conflict: str = "fail"  # what to do with source keys an existing destination holds already

    @abstractmethod
    def prepare(self, schema: Schema, resume: bool) -> bool:
        """Create or check the destination; False means "leave it alone" (mode skip). An
        overwrite builds beside the old data, which ``commit`` replaces once verified."""

    def resumable(self, schema: Schema) -> bool:
        """Whether what an interrupted run wrote is still there to resume into (a query: it
        changes nothing, not even this object)."""
        return True

    def identities(self) -> set[str]:
        """What the existing destination physically is (a collection's id, a resolved path),
        so a run can refuse to copy something onto itself; empty if it does not exist."""
        return set()

    def existing(self, keys: np.ndarray) -> np.ndarray:
        """Those of ``keys`` the destination already holds (a key-only lookup)."""
        return keys[:0]

    @abstractmethod
    def attach(self, schema: Schema) -> None:
        """Open the existing destination without changing it (to resume into or verify it)."""

    @abstractmethod
    def write(self, batch: Batch, replay: bool = False) -> None:
        """Store a batch. ``replay``: it may already be stored in part; write it idempotently."""

    @abstractmethod
    def finish(self) -> None:
        """Make the data durable and usable (flush, index, load)."""

    def commit(self) -> None:
        """After verification: put what this run built in place of what was there (a staged
        overwrite swaps its copy in and only then drops the old one)."""

    @abstractmethod
    def count(self) -> int:
        """Rows the destination holds now (a query: it changes nothing)."""

    @abstractmethod
    def fetch(self, ids: np.ndarray, with_data: bool) -> Batch:
        """The rows with these ids that the destination holds (any order); vectors and
        scalars only ``with_data``."""

    @abstractmethod
    def scan(self, whole: bool, size: int) -> Iterator[Batch]:
        """Every row the destination holds, ``size`` at a time in any order: keys only (the batches'
        vectors empty), or ``whole`` rows. Verification digests these."""

    def lanes(self, whole: bool, size: int, keys: KeySpan | None = None) -> list[Iterator[Batch]]:
        """``scan`` split into disjoint parts that may be read concurrently (one, unless the
        destination can serve several reads at once), cut by where ``keys`` says the int64 keys are."""
        return [self.scan(whole, size)]

    @abstractmethod
    def abandon(self) -> None:
        """Remove what this migration created (the collection, its staging copy, partial files);
        what existed before stays exactly as it was."""

    @abstractmethod
    def remove(self, added: Iterator[np.ndarray]) -> None:
        """Delete rows this migration added to a destination that existed before (never rows
        that were there already: ``added`` holds only keys this run inserted)."""

    def describe(self) -> str:
        return type(self).__name__

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class KeySpan:
    """Where ``rows`` int64 keys lie (all of them from ``lowest`` to ``highest``): what the copy
    saw, so a scan of the target can be cut into ranges of about equal rows."""

    lowest: int
    highest: int
    rows: int

    def ranges(self, rows: int) -> list[tuple[int | None, int | None]]:
        """Adjacent ranges ``[low, high)`` of about ``rows`` keys each, if the keys are spread
        evenly; the first and last are open (None), so together they cover every int64 and
        keys outside the span (a tampered target, rows copied before a resume) are read too."""
        width = self.highest - self.lowest + 1
        parts = max(1, min(-(-self.rows // max(rows, 1)), width))
        edges: list[int | None] = [None, *(self.lowest + width * i // parts for i in range(1, parts)), None]
        return list(pairwise(edges))


def export_files(path: str, local: bool, schema: Schema, suffix: str) -> dict[str | None, tuple[str, Schema, int]]:
    """Where an export's rows go, keyed by partition name: one file, or in a folder (a path
    ending in '/', or an existing local directory) one per source partition,
    ``<collection>_<partition><suffix>`` as MilvusDM wrote them. Each: location, the file's
    schema, and the source position of its first row."""
    if not (path.endswith("/") or (local and Path(path).is_dir())):
        return {None: (path, schema, 0)}
    folder, stem = path.rstrip("/") + "/", schema.name or "export"
    if not schema.partitions:
        return {None: (f"{folder}{stem}{suffix}", schema, 0)}
    return {
        name: (
            f"{folder}{stem}_{name}{suffix}",
            replace(schema, partitions=((name, rows),)),
            schema.partition_start(name),
        )
        for name, rows in schema.partitions
    }
