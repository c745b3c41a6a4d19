"""Columns to and from Milvus' wire format (``schema_pb2.FieldData``), without row dicts.

pymilvus turns query results into one dict per row and inserts from Python lists; both cost
more than the database's own work. Here fixed-width columns cross as one byte string each.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.internal.decoder import _DecodeVarint
from google.protobuf.internal.encoder import _VarintBytes
from pymilvus import DataType
from pymilvus.grpc_gen import schema_pb2

from milvusdm.batch import DYNAMIC_FIELD, NUMPY_TYPES, Column, objects
from milvusdm.errors import InputError

# Milvus scalar type -> (ScalarField attribute, little-endian dtype when packed fixed-width, else None)
SCALARS: dict[DataType, tuple[str, str | None]] = {
    DataType.BOOL: ("bool_data", None),
    DataType.INT8: ("int_data", None),
    DataType.INT16: ("int_data", None),
    DataType.INT32: ("int_data", None),
    DataType.INT64: ("long_data", None),
    DataType.FLOAT: ("float_data", "<f4"),
    DataType.DOUBLE: ("double_data", "<f8"),
    DataType.VARCHAR: ("string_data", None),
    DataType.JSON: ("json_data", None),
}
BYTE_VECTORS = {
    DataType.BINARY_VECTOR: "binary_vector",
    DataType.FLOAT16_VECTOR: "float16_vector",
    DataType.BFLOAT16_VECTOR: "bfloat16_vector",
}


def packed(message_type, values: np.ndarray, dtype: str):
    """A repeated fixed-width field parsed straight from the array's bytes."""
    raw = np.ascontiguousarray(values, dtype=dtype).tobytes()
    return message_type.FromString(b"\x0a" + _VarintBytes(len(raw)) + raw)


def unpacked(message, dtype: str) -> np.ndarray:
    """The inverse of ``packed``: a repeated fixed-width field as an array, in one copy."""
    raw = message.SerializeToString()
    if not raw:
        return np.empty(0, dtype=dtype)
    length, offset = _DecodeVarint(raw, 1)
    return np.frombuffer(raw, dtype=dtype, count=length // np.dtype(dtype).itemsize, offset=offset)


def unsupported(column: Column) -> InputError:
    return InputError(
        f"field {column.name!r} has type {column.dtype.name}, which milvusdm cannot copy yet",
        "leave it out with source.milvus.fields",
    )


def put(field: schema_pb2.FieldData, column: Column, values: np.ndarray) -> None:
    """Fill ``field`` (already added to a request) with a column of a batch."""
    field.type, field.field_name = column.dtype, column.name
    field.is_dynamic = column.name == DYNAMIC_FIELD
    if column.dtype == DataType.FLOAT_VECTOR:
        field.vectors.dim = column.dim
        field.vectors.float_vector.CopyFrom(packed(schema_pb2.FloatArray, values, "<f4"))
    elif column.dtype in BYTE_VECTORS:
        field.vectors.dim = column.dim
        setattr(field.vectors, BYTE_VECTORS[column.dtype], np.ascontiguousarray(values, dtype=np.uint8).tobytes())
    elif column.dtype == DataType.ARRAY:
        field.scalars.array_data.element_type = column.element_type
        attribute, _ = SCALARS[column.element_type]
        for row in values:
            getattr(field.scalars.array_data.data.add(), attribute).data.extend(row)
    elif column.dtype in SCALARS:
        attribute, wire_dtype = SCALARS[column.dtype]
        target = getattr(field.scalars, attribute)
        if wire_dtype:
            target.CopyFrom(packed(type(target), values, wire_dtype))
        elif column.dtype == DataType.JSON:
            target.data.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
        else:
            target.data.extend(values.tolist())
    else:
        raise unsupported(column)


def take(field: schema_pb2.FieldData, column: Column) -> np.ndarray:
    """A column of a query result as a batch holds it (see ``batch.Batch``)."""
    if column.dtype == DataType.FLOAT_VECTOR:
        return unpacked(field.vectors.float_vector, "<f4").reshape(-1, column.dim)
    if column.dtype in BYTE_VECTORS:
        raw = getattr(field.vectors, BYTE_VECTORS[column.dtype])
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, column.width)
    if column.dtype == DataType.ARRAY:
        attribute, _ = SCALARS[column.element_type]
        return objects([list(getattr(row, attribute).data) for row in field.scalars.array_data.data])
    if column.dtype not in SCALARS:
        raise unsupported(column)
    attribute, wire_dtype = SCALARS[column.dtype]
    data = getattr(field.scalars, attribute)
    if wire_dtype:
        return unpacked(data, wire_dtype).astype(wire_dtype[1:])
    if column.dtype in (DataType.VARCHAR, DataType.JSON):
        return objects(list(data.data))
    return np.array(data.data, dtype=NUMPY_TYPES[column.dtype])

