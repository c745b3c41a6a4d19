"""MilvusDM's HDF5 layout, shared by ``source.hdf5`` and ``target.hdf5``.

``embeddings`` (vectors) and ``ids``, one dataset per further field, and the schema as JSON in
an attribute, so that importing an export recreates its collection. Values Milvus holds as
text or structures (varchar, JSON, arrays) are UTF-8 strings in the file.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
from pymilvus import DataType

from milvusdm.batch import objects
from milvusdm.indexes import DISTANCES
from milvusdm.schema import Column, Schema

VECTORS, IDS = "embeddings", "ids"  # MilvusDM's names, written by exports
VECTOR_DEFAULTS = (VECTORS, "train")  # read: MilvusDM's layout, else ann-benchmarks'
SCHEMA_ATTRIBUTE = "milvusdm_schema"
DISTANCE_ATTRIBUTE = "distance"  # ann-benchmarks' metric attribute
TEXT = h5py.string_dtype()


def key_column(schema: Schema) -> Column:
    return schema.key or Column(IDS, DataType.INT64)


def datasets(schema: Schema) -> dict[str, tuple[Column, tuple[int, ...], object]]:
    """Dataset name -> (column, row shape, file dtype) for every column of the schema."""
    layout = {VECTORS: schema.vector, IDS: key_column(schema)}
    layout |= {c.name: c for c in schema.scalars}
    return {name: (c, (c.width,) if c.is_vector else (), file_dtype(c)) for name, c in layout.items()}


def file_dtype(column: Column) -> np.dtype:
    """Numbers and vectors as the batch holds them; everything else as UTF-8 text."""
    kind = column.type
    return np.dtype(kind.numpy) if kind.numpy is not None else TEXT


def to_file(column: Column, values: np.ndarray) -> np.ndarray:
    encode = column.type.to_text
    return objects([encode(v) for v in values]) if encode else values


def from_file(column: Column, values: np.ndarray) -> np.ndarray:
    """The inverse of ``to_file``: values as sources yield them (JSON as bytes, arrays as lists)."""
    decode = column.type.from_text
    return objects([decode(v) for v in values]) if decode else values


def vector_kind(dataset: h5py.Dataset) -> tuple[DataType, int] | None:
    """The vector type and dimension of a vector dataset (None: not one): float as (rows, dim)
    numbers; binary as 2-D uint8 (rows, dim/8), as 2-D bool (rows, dim) (ann-benchmarks' hamming
    and jaccard files) or, as MilvusDM wrote them, 1-D fixed-length bytes ``|S{dim/8}``."""
    dtype, shape = dataset.dtype, dataset.shape
    if len(shape) == 1 and dtype.kind == "S" and dtype.itemsize > 0:
        return DataType.BINARY_VECTOR, 8 * dtype.itemsize
    if len(shape) == 2 and dtype == np.bool_ and shape[1] and shape[1] % 8 == 0:
        return DataType.BINARY_VECTOR, shape[1]  # ann-benchmarks' bit datasets: a bool per dimension
    if len(shape) != 2 or shape[1] == 0 or dtype.kind not in "fiu":
        return None
    return (DataType.BINARY_VECTOR, 8 * shape[1]) if dtype == np.uint8 else (DataType.FLOAT_VECTOR, shape[1])


def vector_rows(values: np.ndarray) -> np.ndarray:
    """Rows read from a vector dataset as a batch holds them: fixed-length bytes and bools become uint8 rows."""
    if values.dtype.kind == "S":
        return np.ascontiguousarray(values).view(np.uint8).reshape(len(values), values.dtype.itemsize)
    if values.dtype == np.bool_:
        return np.packbits(values, axis=1)  # the first dimension in each byte's highest bit, as Milvus packs
    return values


def write_schema(file: h5py.File, schema: Schema) -> None:
    file.attrs[SCHEMA_ATTRIBUTE] = json.dumps(schema.as_dict())
    if schema.metric in DISTANCES:
        file.attrs[DISTANCE_ATTRIBUTE] = DISTANCES[schema.metric]


def read_schema(file: h5py.File) -> Schema | None:
    stored = file.attrs.get(SCHEMA_ATTRIBUTE)
    return Schema.from_dict(json.loads(stored)) if stored is not None else None
