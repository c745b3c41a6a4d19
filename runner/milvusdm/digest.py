"""An order-independent digest of rows, equal wherever the same rows are read from.

A dump records it per file, and a restore recomputes it from the target collection: the rows
come back in another order and through another reader (Milvus' wire instead of HDF5), so each
row is hashed from canonical bytes (numbers in their Milvus width, JSON re-serialised with
sorted keys) and the row hashes are summed modulo 2**64.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
from pymilvus import DataType

from milvusdm.batch import Batch
from milvusdm.schema import Column, Schema

MASK = (1 << 64) - 1


def cells(column: Column, values: np.ndarray) -> list[bytes]:
    """Each value of a column as canonical bytes: fixed-width types in their Milvus width."""
    kind = column.type
    if kind.canonical is not None:
        return [kind.canonical(v) for v in values]
    array = np.ascontiguousarray(values, dtype=kind.numpy)
    raw, width = memoryview(array.tobytes()), array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64))
    return [bytes(raw[i * width : (i + 1) * width]) for i in range(len(array))]


class RowDigest:
    """Feed batches of one schema; ``hexdigest`` does not depend on the order of rows."""

    def __init__(self, schema: Schema) -> None:
        self.key = schema.key or Column("ids", DataType.INT64)
        self.columns = sorted(schema.scalars, key=lambda c: c.name)
        self.vector = schema.vector
        self.rows, self.total = 0, 0

    def update(self, batch: Batch) -> None:
        parts = [cells(self.key, batch.ids), cells(self.vector, batch.vectors)]
        parts += [cells(c, batch.scalars[c.name]) for c in self.columns]
        for row in zip(*parts, strict=True):
            framed = b"".join(len(cell).to_bytes(4, "little") + cell for cell in row)
            self.total += int.from_bytes(hashlib.blake2b(framed, digest_size=8).digest(), "little")
        self.total &= MASK
        self.rows += len(batch)

    def update_all(self, batches: Iterable[Batch]) -> RowDigest:
        for batch in batches:
            self.update(batch)
        return self

    def hexdigest(self) -> str:
        return f"{self.total:016x}"
