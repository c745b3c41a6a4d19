"""The interface every source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.schema import Schema


class Source(ABC):
    """Rows addressed by position 0..total-1, read in batches.

    ``open`` checks everything that can be checked before the target is touched;
    positions make checkpoints and shards plain integers.
    """

    schema: Schema
    total: int

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def batches(self, start: int, stop: int, size: int) -> Iterator[Batch]: ...

    def close(self) -> None:
        """Release files and connections."""

    def describe(self) -> str:
        return type(self).__name__


def check_unique_ids(chunks: Iterator[np.ndarray], origin: str) -> None:
    """Refuse duplicate ids before anything is written: Milvus would keep both copies.

    Holds 8 bytes per row (the ids alone, for int64 keys), a small fraction of the vectors' size.
    """
    parts = [chunk.astype(np.int64) if chunk.dtype.kind in "iu" else chunk for chunk in chunks]
    if not parts:
        return
    ids = np.sort(np.concatenate(parts))
    repeated = ids[1:][ids[1:] == ids[:-1]]
    if repeated.size:
        raise InputError(
            f"{origin} has {repeated.size} duplicate id(s), e.g. {repeated[0]}",
            "make the ids unique; Milvus would store every copy",
        )
