"""Column batches: what every source yields and every sink consumes.

A batch holds numpy arrays only (no Python lists of floats), so memory per batch
is the size of its data and sinks can hand the buffers to the wire as they are.
Primary keys are int64, or strings (an object array) when the source has varchar keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from milvusdm.errors import InputError


def objects(values: list[Any]) -> np.ndarray:
    """A 1-D object array of ``values`` (strings, bytes, lists), never a 2-D one."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@dataclass
class Batch:
    """Rows ``start .. start+len`` of a source, column-wise."""

    start: int
    ids: np.ndarray  # int64, or object (str) for varchar keys, shape (n,)
    vectors: np.ndarray  # float32 (n, dim), or uint8 (n, bytes) for binary and float16 kinds
    scalars: dict[str, np.ndarray] = field(default_factory=dict)
    partition: str | None = None  # the source partition all these rows belong to

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def stop(self) -> int:
        return self.start + len(self.ids)

    def part(self, lo: int, hi: int) -> Batch:
        """Rows ``lo..hi`` of this batch, as a batch of their own."""
        scalars = {name: values[lo:hi] for name, values in self.scalars.items()}
        return replace(self, start=self.start + lo, ids=self.ids[lo:hi], vectors=self.vectors[lo:hi], scalars=scalars)

    def nbytes(self) -> int:
        """An upper bound of the bytes the rows take on the wire (strings at 4 bytes a character)."""

        def size(values: np.ndarray) -> int:
            if values.dtype != object:
                return values.nbytes
            return sum(8 + 4 * len(v) if isinstance(v, str) else 8 + 8 * len(v) for v in values)

        return size(self.ids) + size(self.vectors) + sum(size(v) for v in self.scalars.values())

    def where(self, keep: np.ndarray) -> Batch:
        """The rows where ``keep`` is true, to write (their positions are no longer contiguous)."""
        scalars = {name: values[keep] for name, values in self.scalars.items()}
        return replace(self, ids=self.ids[keep], vectors=self.vectors[keep], scalars=scalars)

    def normalized(self) -> Batch:
        """Cast to the types sinks expect and refuse values Milvus would store as garbage."""
        ids = self.ids
        if ids.dtype.kind in "iu" and ids.dtype != np.int64:
            ids = ids.astype(np.int64)
        vectors = self.vectors
        if vectors.dtype.kind == "f":
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            finite = np.isfinite(vectors).all(axis=1)
            if not finite.all():
                row = self.start + int(np.argmin(finite))
                raise InputError(
                    f"vector of row {row} (id {ids[row - self.start]}) holds NaN or infinity",
                    "clean the source data; Milvus cannot index non-finite values",
                )
        return replace(self, ids=ids, vectors=vectors)
