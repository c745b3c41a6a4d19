"""The model of what a source holds: columns (fields), index definitions and the schema.

Files know little (a vector kind, dimension and metric hint); a Milvus collection, or an export
of one, knows everything, and the target is created to match.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from pymilvus import DataType

from milvusdm import datatypes
from milvusdm.errors import InputError

VARCHAR_MAX_LENGTH = 65_535
DYNAMIC_FIELD = "$meta"  # each row's keys outside the schema, as JSON, like Milvus stores them


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
    def for_numpy(cls, name: str, dtype: np.dtype) -> Column:
        found = datatypes.from_numpy(dtype)
        if found is None:
            raise InputError(
                f"field {name!r} has type {dtype}, which Milvus cannot store",
                "map only numeric, boolean or string datasets to fields",
            )
        return cls(name, found, VARCHAR_MAX_LENGTH if found == DataType.VARCHAR else None)

    @property
    def type(self) -> datatypes.TypeInfo:
        return datatypes.info(self.dtype)

    @property
    def is_vector(self) -> bool:
        return self.type.is_vector

    @property
    def width(self) -> int:
        """Values per row of a vector in a batch: floats, or bytes for binary and float16 kinds."""
        kind = self.type
        assert self.dim is not None and kind.numpy is not None, f"{self.name} is not a dense vector"
        return self.dim * kind.bits // (8 * np.dtype(kind.numpy).itemsize)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v not in (None, "", False)}
        data["dtype"] = self.dtype.name
        if self.element_type is not None:
            data["element_type"] = self.element_type.name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Column:
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
    params: dict[str, Any] = dataclasses.field(default_factory=dict)  # `field` is a column here
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
        return bool(self.vector_type == DataType.BINARY_VECTOR)

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

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return data | {
            "vector_type": self.vector_type.name,
            "scalars": [c.as_dict() for c in self.scalars],
            "key": self.key.as_dict() if self.key else None,
            "partitions": [list(p) for p in self.partitions],
            "indexes": [asdict(i) for i in self.indexes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        return cls(
            **data
            | {
                "vector_type": DataType[data.get("vector_type", "FLOAT_VECTOR")],
                "scalars": tuple(Column.from_dict(c) for c in data.get("scalars", ())),
                "key": Column.from_dict(data["key"]) if data.get("key") else None,
                "partitions": tuple((name, int(rows)) for name, rows in data.get("partitions", ())),
                "indexes": tuple(Index(**i) for i in data.get("indexes", ())),
            }
        )
