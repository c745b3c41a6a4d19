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

from milvusdm.batch import NUMPY_TYPES, VECTOR_TYPES, Column, Schema, objects

VECTORS, IDS = "embeddings", "ids"
SCHEMA_ATTRIBUTE = "milvusdm_schema"
TEXT = h5py.string_dtype()
DISTANCES = {"L2": "euclidean", "COSINE": "angular", "IP": "dot", "HAMMING": "hamming", "JACCARD": "jaccard"}


def key_column(schema: Schema) -> Column:
    return schema.key or Column(IDS, DataType.INT64)


def datasets(schema: Schema) -> dict[str, tuple[Column, tuple[int, ...], object]]:
    """Dataset name -> (column, row shape, file dtype) for every column of the schema."""
    layout = {VECTORS: schema.vector, IDS: key_column(schema)}
    layout |= {c.name: c for c in schema.scalars}
    return {name: (c, (c.width,) if c.is_vector else (), file_dtype(c)) for name, c in layout.items()}


def file_dtype(column: Column):
    if column.is_vector:
        return np.dtype(VECTOR_TYPES[column.dtype])
    return np.dtype(NUMPY_TYPES[column.dtype]) if column.dtype in NUMPY_TYPES else TEXT


def to_file(column: Column, values: np.ndarray) -> np.ndarray:
    if column.dtype == DataType.JSON:
        return np.array([v.decode() if isinstance(v, bytes) else json.dumps(v) for v in values], dtype=object)
    if column.dtype == DataType.ARRAY:
        return np.array([json.dumps(list(v)) for v in values], dtype=object)
    return values


def from_file(column: Column, values: np.ndarray) -> np.ndarray:
    """The inverse of ``to_file``: values as sources yield them (JSON as bytes, arrays as lists)."""
    if column.dtype == DataType.JSON:
        return objects([v.encode() for v in values])
    if column.dtype == DataType.ARRAY:
        return objects([json.loads(v) for v in values])
    return values



def write_schema(file: h5py.File, schema: Schema) -> None:
    file.attrs[SCHEMA_ATTRIBUTE] = json.dumps(schema.as_dict())
    if schema.metric in DISTANCES:
        file.attrs["distance"] = DISTANCES[schema.metric]


def read_schema(file: h5py.File) -> Schema | None:
    stored = file.attrs.get(SCHEMA_ATTRIBUTE)
    return Schema.from_dict(json.loads(stored)) if stored is not None else None
