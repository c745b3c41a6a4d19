"""The interface every sink implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

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
