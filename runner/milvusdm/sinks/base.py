"""The interface every sink implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from milvusdm.batch import Batch, Schema


class Sink(ABC):
    """Where rows go. ``write`` may be called from several threads at once."""

    created: bool = False  # prepare() made the destination: rollback can remove it whole

    @abstractmethod
    def prepare(self, schema: Schema, resume: bool) -> bool:
        """Create or check the destination; False means "leave it alone" (mode skip)."""

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
    def rollback(self, written_ids: list[np.ndarray]) -> None:
        """Undo this run's writes after bad input was found mid-stream.

        ``written_ids`` is only collected when the sink did not create the destination.
        """

    def describe(self) -> str:
        return type(self).__name__

    def close(self) -> None:
        """Release connections."""
