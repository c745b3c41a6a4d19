"""Arrow columns <-> batch columns, and the Parquet layout shared by ``source.parquet`` and
``target.parquet``.

The layout is the one Milvus' bulk import reads (and pymilvus' ``BulkWriter`` writes): one
column per field named after it, the vector as a list of float32 (binary and float16 kinds as
lists of bytes), JSON and ``$meta`` as JSON text, arrays as lists. The collection schema rides
in the file's key-value metadata, so importing an export recreates the collection.
Fixed-width columns cross between Arrow and numpy without a Python object per value; strings
and JSON text become str and bytes objects in pyarrow's C++.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymilvus import DataType

from milvusdm.batch import objects
from milvusdm.errors import InputError
from milvusdm.schema import VARCHAR_MAX_LENGTH, Column, Schema

SCHEMA_KEY = b"milvusdm_schema"
ID, VECTOR = "id", "vector"  # column names when the source named neither
ARRAY_MAX_CAPACITY = 4096  # Milvus' limit; arrays read from plain files get it


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type of a field's column (the ``arrow`` column of the type table)."""
    if column.dtype == DataType.ARRAY:
        return pa.list_(arrow_type(Column(column.name, column.element_type)))
    name = column.type.arrow
    if name is None:
        raise InputError(
            f"field {column.name!r} has type {column.dtype.name}, which Parquet exports cannot hold yet",
            "leave it out with source.milvus.fields",
        )
    kind = pa.type_for_alias(name)
    return pa.list_(kind) if column.is_vector else kind


def columns(schema: Schema) -> dict[str, Column]:
    """File column -> field, in file order: key, vector, then every other field."""
    key = schema.key or Column(ID, DataType.INT64)
    vector = replace(schema.vector, name=schema.vector_name or VECTOR)
    return {key.name: key, vector.name: vector} | {c.name: c for c in schema.scalars}


def arrow_schema(schema: Schema) -> pa.Schema:
    fields = [pa.field(name, arrow_type(c), nullable=False) for name, c in columns(schema).items()]
    return pa.schema(fields, metadata={SCHEMA_KEY: json.dumps(schema.as_dict())})


def stored_schema(metadata: dict[bytes, bytes] | None) -> Schema | None:
    """The schema a milvusdm export carries, if this file is one."""
    text = (metadata or {}).get(SCHEMA_KEY)
    return Schema.from_dict(json.loads(text)) if text else None


def infer(name: str, kind: pa.DataType) -> Column:
    """The field a plain file's column becomes: numbers, booleans, strings; lists of those as
    arrays; structs and maps as JSON."""
    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        return Column(name, DataType.JSON)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return Column(name, DataType.VARCHAR, VARCHAR_MAX_LENGTH)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        element = infer(name, kind.value_type)
        if element.dtype in (DataType.JSON, DataType.ARRAY):
            raise InputError(
                f"column {name!r} holds lists of {kind.value_type}, which Milvus arrays cannot hold",
                "leave it out with source.parquet.fields",
            )
        return Column(
            name, DataType.ARRAY, element.max_length, element_type=element.dtype, max_capacity=ARRAY_MAX_CAPACITY
        )
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return Column.for_numpy(name, np.dtype(kind.to_pandas_dtype()))
    raise InputError(
        f"column {name!r} has type {kind}, which Milvus cannot store", "leave it out with source.parquet.fields"
    )


def vector_kind(kind: pa.DataType) -> DataType | None:
    """The vector type a column can be read as without a stored schema: lists of floats, or
    fixed-size binary (binary vectors, 8 dimensions a byte)."""
    if pa.types.is_fixed_size_binary(kind):
        return DataType.BINARY_VECTOR
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    return DataType.FLOAT_VECTOR if listed and pa.types.is_floating(kind.value_type) else None


def to_arrow(column: Column, values: np.ndarray) -> pa.Array:
    """A batch column as its Arrow column in the layout (vectors without a copy per value)."""
    kind = arrow_type(column)
    if column.is_vector:
        rows, width = values.shape
        flat = pa.array(np.ascontiguousarray(values, dtype=column.type.numpy).reshape(-1))
        return pa.ListArray.from_arrays(pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32)), flat)
    if column.dtype == DataType.JSON:
        return pa.array([v.decode() if isinstance(v, bytes) else json.dumps(v) for v in values], kind)
    if column.dtype in (DataType.VARCHAR, DataType.ARRAY):
        return pa.array(list(values), kind)
    return pa.array(values, kind)


def from_arrow(column: Column, array: pa.Array, where: str, first: int = 0) -> np.ndarray:
    """An Arrow column as a batch holds it (see ``batch.Batch``); errors name ``where`` and the
    row (``first`` is the row of the array's first value)."""
    if array.null_count:
        raise InputError(
            f"column {column.name!r} of {where} holds {array.null_count} null(s)",
            "fill them in or drop those rows; Milvus fields cannot be null",
        )
    if column.is_vector:
        return _vectors(column, array, where, first)
    if column.dtype == DataType.ARRAY:
        _values(array, f"array {column.name!r}", where, first)
        return objects(array.to_pylist())  # 1M short lists: 0.6 s; values converted in C, then cut per row: 0.7 s
    if column.dtype == DataType.JSON:
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            return objects([json.dumps(_plain(value)).encode() for value in array.to_pylist()])  # structs, maps
        array = pc.cast(array, pa.large_binary())  # the JSON text's UTF-8 bytes
    # numbers without a copy; strings (VARCHAR) and bytes (JSON) as str and bytes objects made in C
    values: np.ndarray = array.to_numpy(zero_copy_only=False)
    return values if column.type.numpy is None else values.astype(column.type.numpy, copy=False)


def _vectors(column: Column, array: pa.Array, where: str, first: int) -> np.ndarray:
    if pa.types.is_fixed_size_binary(array.type):
        width = array.type.byte_width
        data = np.frombuffer(array.buffers()[1], dtype=np.uint8)
        return data[array.offset * width : (array.offset + len(array)) * width].reshape(-1, width)
    lengths = pc.list_value_length(array).to_numpy(zero_copy_only=False)
    ragged = lengths != column.width
    if ragged.any():
        row = int(np.argmax(ragged))
        raise InputError(
            f"the vector at row {first + row} of {where} has {lengths[row]} values, not {column.width}",
            "give every vector the same dimension",
        )
    flat: np.ndarray = _values(array, "vector", where, first).to_numpy(zero_copy_only=False)
    dtype = column.type.numpy if column.dtype != DataType.FLOAT_VECTOR else flat.dtype  # floats: normalized later
    return flat.astype(dtype, copy=False).reshape(len(array), column.width)


def _values(array: pa.Array, what: str, where: str, first: int) -> pa.Array:
    """The values of a list column's rows, refusing a null inside a list (null rows are refused
    before): Milvus vectors and arrays cannot hold one."""
    values = array.flatten()
    if values.null_count:
        row = pc.list_parent_indices(array).filter(values.is_null())[0].as_py()
        raise InputError(
            f"the {what} at row {first + row} of {where} holds a null value", "fill it in or drop that row"
        )
    return values


def _plain(value: object) -> object:
    """A struct or map value as JSON-ready data (maps arrive as lists of (key, value) pairs)."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {str(k): _plain(v) for k, v in value}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
