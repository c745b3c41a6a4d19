"""Columns to and from Milvus' wire format (``schema_pb2.FieldData``), without row dicts.

pymilvus turns query results into one dict per row and inserts from Python lists; both cost
more than the database's own work. Here fixed-width columns cross as one byte string each.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import Message
from pymilvus import DataType
from pymilvus.grpc_gen import schema_pb2

from milvusdm import datatypes
from milvusdm.batch import objects
from milvusdm.errors import InputError
from milvusdm.internals import read_varint, varint
from milvusdm.schema import DYNAMIC_FIELD, Column


def fill_packed(target: Message, values: np.ndarray, dtype: str) -> None:
    """Set a message whose field 1 is a repeated fixed-width field (``FloatArray``, ``LongArray``…)
    by parsing the array's bytes, framed as that field, straight into it: one copy into the frame,
    then the parse. (Parsing a message apart and ``CopyFrom`` into the request made two more
    copies of each batch's vectors and took several times as long.)"""
    data = np.ascontiguousarray(values, dtype=dtype).reshape(-1).view(np.uint8)
    prefix = np.frombuffer(b"\x0a" + varint(data.nbytes), dtype=np.uint8)
    frame = np.empty(len(prefix) + data.nbytes, dtype=np.uint8)
    frame[: len(prefix)], frame[len(prefix) :] = prefix, data
    target.Clear()
    target.MergeFromString(frame.data)


def unpacked(message: Message, dtype: str) -> np.ndarray:
    """The inverse of ``packed``: a repeated fixed-width field as an array, in one copy."""
    raw = message.SerializeToString()
    if not raw:
        return np.empty(0, dtype=dtype)
    length, offset = read_varint(raw, 1)
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
    kind = column.type
    if kind.wire is None:
        raise unsupported(column)
    if kind.is_vector:
        field.vectors.dim = column.dim
        if kind.packed:
            fill_packed(getattr(field.vectors, kind.wire), values, kind.packed)
        else:
            setattr(field.vectors, kind.wire, np.ascontiguousarray(values, dtype=np.uint8).tobytes())
    elif column.dtype == DataType.ARRAY:
        field.scalars.array_data.element_type = column.element_type
        attribute = _element_wire(column)
        for row in values:
            getattr(field.scalars.array_data.data.add(), attribute).data.extend(row)
    else:
        target = getattr(field.scalars, kind.wire)
        if kind.packed:
            fill_packed(target, values, kind.packed)
        elif column.dtype == DataType.JSON:
            target.data.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
        else:
            target.data.extend(values.tolist())


def take(field: schema_pb2.FieldData, column: Column) -> np.ndarray:
    """A column of a query result as a batch holds it (see ``batch.Batch``)."""
    kind = column.type
    if kind.wire is None:
        raise unsupported(column)
    if kind.is_vector:
        if kind.packed:
            return unpacked(getattr(field.vectors, kind.wire), kind.packed).reshape(-1, column.width)
        return np.frombuffer(getattr(field.vectors, kind.wire), dtype=np.uint8).reshape(-1, column.width)
    if column.dtype == DataType.ARRAY:
        attribute = _element_wire(column)
        return objects([list(getattr(row, attribute).data) for row in field.scalars.array_data.data])
    data = getattr(field.scalars, kind.wire)
    if kind.packed:
        return unpacked(data, kind.packed).astype(kind.packed[1:])
    if kind.numpy is None:
        return objects(list(data.data))
    return np.array(data.data, dtype=kind.numpy)


def _element_wire(column: Column) -> str:
    """The ScalarField attribute holding one row of an array column."""
    wire = datatypes.info(column.element_type).wire if column.element_type is not None else None
    if wire is None:
        raise unsupported(column)
    return wire
