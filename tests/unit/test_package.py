"""The public facade and the type table's agreement with the code that reads it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pymilvus import DataType

import milvusdm
from milvusdm import datatypes, digest
from milvusdm.batch import objects
from milvusdm.schema import Column


def test_facade_names_resolve_and_match_all():
    for name in milvusdm.__all__:
        assert getattr(milvusdm, name) is not None
    assert set(milvusdm.__all__) - {"__version__", "verify"} == set(milvusdm._EXPORTS)
    assert callable(milvusdm.verify)
    with pytest.raises(AttributeError):
        milvusdm.no_such_name  # noqa: B018


def test_importing_the_package_loads_no_engine():
    code = "import milvusdm, milvusdm.spec, sys; print(sorted(m for m in ('pymilvus', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "dtype, milvus",
    [
        ("bool", DataType.BOOL),
        ("int8", DataType.INT8),
        ("uint8", DataType.INT16),
        ("uint16", DataType.INT32),
        ("int64", DataType.INT64),
        ("uint32", DataType.INT64),
        ("float16", DataType.FLOAT),
        ("float64", DataType.DOUBLE),
        ("S4", DataType.VARCHAR),
        ("U4", DataType.VARCHAR),
        ("uint64", None),
        ("complex64", None),
    ],
)
def test_file_types_map_to_the_milvus_type_that_holds_them_exactly(dtype, milvus):
    assert datatypes.from_numpy(np.dtype(dtype)) == milvus


@pytest.mark.parametrize(
    "column, width",
    [
        (Column("v", DataType.FLOAT_VECTOR, dim=128), 128),
        (Column("b", DataType.BINARY_VECTOR, dim=512), 64),
        (Column("h", DataType.FLOAT16_VECTOR, dim=8), 16),
        (Column("bf", DataType.BFLOAT16_VECTOR, dim=8), 16),
    ],
)
def test_vector_width_in_a_batch(column, width):
    assert column.width == width


def test_copyable_types():
    assert datatypes.copyable(DataType.ARRAY, DataType.VARCHAR)
    assert not datatypes.copyable(DataType.ARRAY, DataType.JSON)
    assert not datatypes.copyable(DataType.SPARSE_FLOAT_VECTOR)
    assert all(datatypes.copyable(t) for t in (DataType.JSON, DataType.FLOAT16_VECTOR, DataType.INT8))


def test_digest_words_are_equal_exactly_when_milvus_stores_equal_values():
    def same(dtype: DataType, ours: object, theirs: object) -> bool:
        column = Column("c", dtype)
        key = bytes(16)
        return bool((digest.words(column, objects([ours]), key) == digest.words(column, objects([theirs]), key)).all())

    assert same(DataType.FLOAT, 0.1, np.float32(0.1))
    assert same(DataType.FLOAT, float("nan"), np.float32("nan"))
    assert not same(DataType.DOUBLE, 0.1, float(np.float32(0.1)))
    assert same(DataType.JSON, b'{"a": 1, "b": 2}', b'{"b":2,"a":1}')
    assert not same(DataType.JSON, b'{"a": 1}', b'{"a": 2}')
