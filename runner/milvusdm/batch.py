"""Column batches: what every source yields and every sink consumes.

A batch holds numpy arrays only (no Python lists of floats), so memory per batch
is the size of its data and sinks can hand the buffers to the wire as they are.
Primary keys are int64, or strings (an object array) when the source has varchar keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

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
# Vector type -> numpy type of a batch's (rows, width) array; float16 kinds travel as raw bytes
VECTOR_TYPES: dict[DataType, str] = {
    DataType.FLOAT_VECTOR: "float32",
    DataType.BINARY_VECTOR: "uint8",
    DataType.FLOAT16_VECTOR: "uint8",
    DataType.BFLOAT16_VECTOR: "uint8",
}
VARCHAR_MAX_LENGTH = 65_535
DYNAMIC_FIELD = "$meta"  # each row's keys outside the schema, as JSON, like Milvus stores them


def objects(values: list) -> np.ndarray:
    """A 1-D object array of ``values`` (strings, bytes, lists), never a 2-D one."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@dataclass(frozen=True)
class Column:
    """A field: its name, Milvus type and type parameters."""

    name: str
    dtype: DataType
    max_length: int | None = None  # varchar, and arrays of varchar
    dim: int | None = None  # vectors
    element_type: DataType | None = None  # arrays
    max_capacity: int | None = None  # arrays
    description: str = ""
    partition_key: bool = False

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

    @property
    def is_vector(self) -> bool:
        return self.dtype in VECTOR_TYPES or self.dtype == DataType.SPARSE_FLOAT_VECTOR

    @property
    def width(self) -> int:
        """Numbers per row of a vector in a batch (bytes for binary and float16 kinds)."""
        bits_per_value = {DataType.FLOAT_VECTOR: 32, DataType.BINARY_VECTOR: 1}.get(self.dtype, 16)
        return self.dim * bits_per_value // (32 if self.dtype == DataType.FLOAT_VECTOR else 8)

    def as_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v not in (None, "", False)}
        data["dtype"] = self.dtype.name
        if self.element_type is not None:
            data["element_type"] = self.element_type.name
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Column":
        types = {"dtype": DataType[data["dtype"]]}
        if data.get("element_type"):
            types["element_type"] = DataType[data["element_type"]]
        return cls(**(data | types))


@dataclass(frozen=True)
class Index:
    """An index definition, as the source had it (recreated on the target)."""

    field: str
    index_type: str
    metric_type: str | None = None
    params: dict = field(default_factory=dict)
    name: str | None = None


@dataclass(frozen=True)
class Schema:
    """What a source holds.

    Files know little (a vector kind, dimension and metric hint; the target names the key and
    vector fields); a Milvus collection, or an export of one, knows everything, and the target
    is created to match: key, fields, dynamic field, partitions, indexes, description.
    """

    dim: int
    vector_type: DataType = DataType.FLOAT_VECTOR
    scalars: tuple[Column, ...] = ()  # every other field: scalars, JSON, arrays, further vectors, $meta
    metric: str | None = None
    lossy: bool = False  # vectors are decoded approximations (compressed Faiss indexes)
    key: Column | None = None  # the source's primary key; None: int64, named by the target
    vector_name: str | None = None  # None: named by the target
    name: str | None = None  # the source collection
    description: str = ""
    partitions: tuple[tuple[str, int], ...] = ()  # (name, rows) in source order; empty: no partitions
    indexes: tuple[Index, ...] = ()
    auto_id: bool = False  # the source generated its keys; the target keeps them as given

    @property
    def binary(self) -> bool:
        return self.vector_type == DataType.BINARY_VECTOR

    @property
    def vector(self) -> Column:
        return Column(self.vector_name or "vector", self.vector_type, dim=self.dim)

    @property
    def dynamic(self) -> bool:
        return any(c.name == DYNAMIC_FIELD for c in self.scalars)

    def partition_start(self, name: str | None) -> int:
        """Position of a partition's first row among the source's rows."""
        start = 0
        for partition, rows in self.partitions:
            if partition == name:
                return start
            start += rows
        return 0

    def as_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return data | {
            "vector_type": self.vector_type.name,
            "scalars": [c.as_dict() for c in self.scalars],
            "key": self.key.as_dict() if self.key else None,
            "partitions": [list(p) for p in self.partitions],
            "indexes": [asdict(i) for i in self.indexes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Schema":
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        return cls(**data | {
            "vector_type": DataType[data.get("vector_type", "FLOAT_VECTOR")],
            "scalars": tuple(Column.from_dict(c) for c in data.get("scalars", ())),
            "key": Column.from_dict(data["key"]) if data.get("key") else None,
            "partitions": tuple((name, int(rows)) for name, rows in data.get("partitions", ())),
            "indexes": tuple(Index(**i) for i in data.get("indexes", ())),
        })


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

    def normalized(self) -> "Batch":
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
