"""The interface every sink implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from milvusdm.batch import Batch
from milvusdm.schema import Schema


class Sink(ABC):
    """Where rows go. ``write`` may be called from several threads at once."""

    created: bool = False  # prepare() made the destination

    @abstractmethod
    def prepare(self, schema: Schema, resume: bool) -> bool:
        """Create or check the destination; False means "leave it alone" (mode skip)."""

    def resumable(self, schema: Schema) -> bool:
        """Whether what an interrupted run wrote is still there to resume into."""
        return True

    @abstractmethod
    def attach(self, schema: Schema) -> None:
        """Open the existing destination without changing it (to resume into or verify it)."""

    @abstractmethod
    def write(self, batch: Batch, replay: bool = False) -> None:
        """Store a batch. ``replay``: it may already be stored in part; write it idempotently."""

    @abstractmethod
    def finish(self) -> None:
        """Make the data durable and usable (flush, index, load)."""

    @abstractmethod
    def count(self) -> int:
        """Rows the destination holds now."""

    @abstractmethod
    def fetch(self, ids: np.ndarray, with_data: bool) -> Batch:
        """The rows with these ids that the destination holds (any order); vectors and
        scalars only ``with_data``."""

    @abstractmethod
    def rollback(self, written: Iterator[np.ndarray] | None) -> None:
        """Undo this migration's writes after bad input was found mid-stream: delete the ids
        in ``written`` (read again from the source), or with None, remove the destination
        this migration created."""

    def describe(self) -> str:
        return type(self).__name__

    def close(self) -> None:
        """Release connections."""


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
        name: (f"{folder}{stem}_{name}{suffix}", replace(schema, partitions=((name, rows),)), schema.partition_start(name))
        for name, rows in schema.partitions
    }
