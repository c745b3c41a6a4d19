"""Column batches: what every source yields and every sink consumes.

A batch holds numpy arrays only (no Python lists of floats), so memory per batch
is the size of its data and sinks can hand the buffers to the wire as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pymilvus import DataType

from milvusdm.errors import InputError

# numpy dtype kind+size -> Milvus scalar type
SCALAR_TYPES: dict[str, DataType] = {
    "b1": DataType.BOOL,
    "i1": DataType.INT8,
    "i2": DataType.INT16,
    "i4": DataType.INT32,
    "i8": DataType.INT64,
    "u1": DataType.INT16,
    "u2": DataType.INT32,
    "u4": DataType.INT64,
    "f2": DataType.FLOAT,
    "f4": DataType.FLOAT,
    "f8": DataType.DOUBLE,
}
# Milvus scalar type -> the numpy type that holds it exactly (for files we write)
NUMPY_TYPES: dict[DataType, str] = {
    DataType.BOOL: "bool",
    DataType.INT8: "int8",
    DataType.INT16: "int16",
    DataType.INT32: "int32",
    DataType.INT64: "int64",
    DataType.FLOAT: "float32",
    DataType.DOUBLE: "float64",
}
VARCHAR_MAX_LENGTH = 65_535


@dataclass(frozen=True)
class Column:
    """A scalar field: its name and Milvus type."""

    name: str
    dtype: DataType
    max_length: int | None = None

    @classmethod
    def for_numpy(cls, name: str, dtype: np.dtype) -> "Column":
        if dtype.kind in "SUO":
            return cls(name, DataType.VARCHAR, VARCHAR_MAX_LENGTH)
        key = f"{dtype.kind}{dtype.itemsize}"
        if key not in SCALAR_TYPES:
            raise InputError(
                f"field {name!r} has type {dtype}, which Milvus cannot store",
                "map only numeric, boolean or string datasets to fields",
            )
        return cls(name, SCALAR_TYPES[key])


@dataclass(frozen=True)
class Schema:
    """What a source holds: vector kind and dimension, scalar columns, a metric hint."""

    dim: int
    binary: bool = False
    scalars: tuple[Column, ...] = ()
    metric: str | None = None
    lossy: bool = False  # vectors are decoded approximations (compressed Faiss indexes)

    @property
    def vector_type(self) -> DataType:
        return DataType.BINARY_VECTOR if self.binary else DataType.FLOAT_VECTOR


@dataclass
class Batch:
    """Rows ``start .. start+len`` of a source, column-wise."""

    start: int
    ids: np.ndarray  # int64, shape (n,)
    vectors: np.ndarray  # float32 (n, dim), or uint8 (n, dim/8) for binary vectors
    scalars: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def stop(self) -> int:
        return self.start + len(self.ids)

    def normalized(self) -> "Batch":
        """Cast to the types sinks expect and refuse values Milvus would store as garbage."""
        ids = self.ids if self.ids.dtype == np.int64 else self.ids.astype(np.int64)
        vectors = self.vectors
        if vectors.dtype.kind == "f":
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            finite = np.isfinite(vectors).all(axis=1)
            if not finite.all():
                row = self.start + int(np.argmin(finite))
                raise InputError(
                    f"vector of row {row} (id {int(ids[row - self.start])}) holds NaN or infinity",
                    "clean the source data; Milvus cannot index non-finite values",
                )
        return Batch(self.start, ids, vectors, self.scalars)
