"""Columns survive the trip to Milvus' wire format and back, for every type milvusdm copies."""

from __future__ import annotations

import numpy as np
import pytest
from pymilvus import DataType
from pymilvus.grpc_gen import schema_pb2

from milvusdm.batch import objects
from milvusdm.errors import InputError
from milvusdm.schema import DYNAMIC_FIELD, Column
from milvusdm.wire import put, take

rng = np.random.default_rng(5)
CASES = [
    (Column("id", DataType.INT64), np.array([-(2**63), 0, 2**63 - 1], dtype=np.int64)),
    (Column("sku", DataType.VARCHAR, max_length=8), objects(["a", "«b»", ""])),
    (Column("ok", DataType.BOOL), np.array([True, False, True])),
    (Column("i8", DataType.INT8), np.array([-128, 0, 127], dtype=np.int8)),
    (Column("i16", DataType.INT16), np.array([-5, 0, 32767], dtype=np.int16)),
    (Column("i32", DataType.INT32), np.array([-(2**31), 1, 2**31 - 1], dtype=np.int32)),
    (Column("f", DataType.FLOAT), np.array([0.1, -2.5, 3e38], dtype=np.float32)),
    (Column("d", DataType.DOUBLE), np.array([0.1, -2.5, 1e300])),
    (Column("j", DataType.JSON), objects([b'{"a": 1}', b"[1, 2]", b'"x"'])),
    (Column(DYNAMIC_FIELD, DataType.JSON), objects([b"{}", b'{"k": null}', b'{"n": 2}'])),
    (Column("arr", DataType.ARRAY, element_type=DataType.INT64, max_capacity=4), objects([[1, 2**62], [], [3]])),
    (
        Column("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=2, max_length=5),
        objects([["a"], [], ["b", "c"]]),
    ),
    (Column("v", DataType.FLOAT_VECTOR, dim=4), rng.random((3, 4), dtype=np.float32)),
    (Column("b", DataType.BINARY_VECTOR, dim=16), rng.integers(0, 255, (3, 2), dtype=np.uint8)),
    (Column("h", DataType.FLOAT16_VECTOR, dim=4), rng.random((3, 4)).astype(np.float16).view(np.uint8)),
]


@pytest.mark.parametrize(("column", "values"), CASES, ids=[c.name for c, _ in CASES])
def test_round_trip(column, values):
    field = schema_pb2.FieldData()
    put(field, column, values)
    assert field.field_name == column.name and field.is_dynamic == (column.name == DYNAMIC_FIELD)
    back = take(schema_pb2.FieldData.FromString(field.SerializeToString()), column)
    assert back.shape == values.shape
    assert [list(v) if isinstance(v, np.ndarray) else v for v in back.tolist()] == values.tolist()


def test_empty_result_has_the_column_shape():
    assert take(schema_pb2.FieldData(), Column("v", DataType.FLOAT_VECTOR, dim=8)).shape == (0, 8)


def test_sparse_vectors_are_refused_clearly():
    with pytest.raises(InputError, match="SPARSE_FLOAT_VECTOR, which milvusdm cannot copy yet"):
        put(schema_pb2.FieldData(), Column("s", DataType.SPARSE_FLOAT_VECTOR), objects([{}]))
