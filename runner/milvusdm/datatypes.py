"""What milvusdm knows about each Milvus data type: one row per type.

Every module that converts or compares values (batches, the wire, files, verification, the
Milvus source's "can this be copied") reads this table, so adding a type is one new row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import DataType


def _json_to_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else json.dumps(value)


@dataclass(frozen=True)
class TypeInfo:
    """How one Milvus type is held in a batch, sent on the wire, written to files and digested."""

    numpy: str | None  # dtype of a batch's column (of its (rows, width) array for vectors); None: objects
    wire: str | None  # attribute of schema_pb2.ScalarField / VectorField holding it; None: not copyable
    packed: str | None = None  # little-endian dtype when the wire attribute is a packed fixed-width array
    bits: int = 0  # vectors: bits per dimension (a batch row holds dim * bits // 8 bytes)
    from_numpy: tuple[str, ...] = ()  # numpy kind+size of file data that becomes this type
    to_text: Callable[[Any], str] | None = None  # files keep these as UTF-8 text (JSON, arrays)
    from_text: Callable[[str], Any] | None = None
    arrow: str | None = (
        None  # Arrow type name of its Parquet column in Milvus' import layout (vectors: of the list's values)
    )
    digest: str = (
        "int64"  # how verification digests it (``digest.words``): int64, float32, float64, bytes, text, json, array
    )

    @property
    def is_vector(self) -> bool:
        return self.bits > 0


TYPES: dict[DataType, TypeInfo] = {
    DataType.BOOL: TypeInfo("bool", "bool_data", from_numpy=("b1",), arrow="bool"),
    DataType.INT8: TypeInfo("int8", "int_data", from_numpy=("i1",), arrow="int8"),
    DataType.INT16: TypeInfo("int16", "int_data", from_numpy=("i2", "u1"), arrow="int16"),
    DataType.INT32: TypeInfo("int32", "int_data", from_numpy=("i4", "u2"), arrow="int32"),
    DataType.INT64: TypeInfo("int64", "long_data", from_numpy=("i8", "u4"), arrow="int64"),
    DataType.FLOAT: TypeInfo(
        "float32", "float_data", "<f4", from_numpy=("f2", "f4"), arrow="float32", digest="float32"
    ),
    DataType.DOUBLE: TypeInfo("float64", "double_data", "<f8", from_numpy=("f8",), arrow="float64", digest="float64"),
    DataType.VARCHAR: TypeInfo(None, "string_data", arrow="string", digest="text"),
    DataType.JSON: TypeInfo(
        None,
        "json_data",
        to_text=_json_to_text,
        from_text=str.encode,
        arrow="string",
        digest="json",
    ),
    DataType.ARRAY: TypeInfo(
        None,
        "array_data",
        to_text=lambda v: json.dumps(list(v)),
        from_text=json.loads,
        digest="array",
    ),
    DataType.FLOAT_VECTOR: TypeInfo("float32", "float_vector", "<f4", bits=32, arrow="float32", digest="bytes"),
    DataType.BINARY_VECTOR: TypeInfo("uint8", "binary_vector", bits=1, arrow="uint8", digest="bytes"),
    DataType.FLOAT16_VECTOR: TypeInfo("uint8", "float16_vector", bits=16, arrow="uint8", digest="bytes"),
    DataType.BFLOAT16_VECTOR: TypeInfo("uint8", "bfloat16_vector", bits=16, arrow="uint8", digest="bytes"),
    DataType.SPARSE_FLOAT_VECTOR: TypeInfo(None, None, bits=32),
}
TEXT_KINDS = "SUO"  # numpy kinds of file data that becomes VARCHAR


def info(dtype: DataType) -> TypeInfo:
    return TYPES.get(dtype, TypeInfo(None, None))


def from_numpy(dtype: np.dtype) -> DataType | None:
    """The Milvus type that stores file data of this numpy type exactly (None: none does)."""
    if dtype.kind in TEXT_KINDS:
        return DataType.VARCHAR
    key = f"{dtype.kind}{dtype.itemsize}"
    return next((t for t, row in TYPES.items() if key in row.from_numpy), None)


def copyable(dtype: DataType, element_type: DataType | None = None) -> bool:
    """Whether milvusdm can read and write this type (arrays: of a scalar element type)."""
    if dtype == DataType.ARRAY:
        element = info(element_type) if element_type is not None else TypeInfo(None, None)
        return element.wire is not None and not element.is_vector and element.to_text is None
    return info(dtype).wire is not None
