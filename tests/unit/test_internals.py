"""The private pymilvus and protobuf APIs of ``milvusdm.internals``, each exercised offline.

When a pymilvus or protobuf upgrade moves one of them, these tests fail with a message naming
the module to mend, instead of a user's run failing mid-copy.
"""

from __future__ import annotations

import inspect

import pytest
from pymilvus import MilvusClient
from pymilvus.client.grpc_handler import GrpcHandler
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from milvusdm import internals

BROKEN = "a pymilvus/protobuf upgrade broke a private API used by runner/milvusdm/internals.py: "


def test_varints_round_trip():
    for value in (0, 1, 127, 128, 300, 2**31, 2**63 - 1):
        encoded = internals.varint(value)
        assert internals.read_varint(b"\x0a" + encoded, 1) == (value, 1 + len(encoded)), BROKEN + "varints"


def test_packed_fields_parse_from_a_length_prefixed_buffer_into_a_field():
    raw = (1.5).hex().encode()  # any bytes of a length that is a multiple of 4
    field = schema_pb2.FieldData()
    field.vectors.float_vector.MergeFromString(memoryview(b"\x0a" + internals.varint(len(raw[:8])) + raw[:8]))
    assert len(field.vectors.float_vector.data) == 2, BROKEN + "packed FloatArray parsing from a memoryview"


def test_query_request_takes_iterator_paging():
    request = internals.query_request(
        "c", "id > 0", ["id"], ["p"], 3, limit=10, iterator="True", reduce_stop_for_best="True"
    )
    assert isinstance(request, milvus_pb2.QueryRequest), BROKEN + "Prepare.query_request"
    params = {p.key: p.value for p in request.query_params}
    assert params.get("limit") == "10" and params.get("iterator") == "True", BROKEN + "query paging parameters"


@pytest.mark.parametrize(
    "method, request_type, keyword",
    [
        ("_prepare_batch_insert_request", milvus_pb2.InsertRequest, "insert_param"),
        ("_prepare_batch_upsert_request", milvus_pb2.UpsertRequest, "upsert_param"),
    ],
)
def test_handler_sends_a_prebuilt_request_as_it_is(method, request_type, keyword):
    """batch_insert/upsert hand ``insert_param``/``upsert_param`` through their preparation step."""
    prebuilt = request_type(collection_name="c", num_rows=1)
    handler = GrpcHandler.__new__(GrpcHandler)  # no channel: the preparation step makes no call
    try:
        prepared = getattr(handler, method)("c", [], schema={"fields": []}, **{keyword: prebuilt})
    except Exception as error:
        pytest.fail(BROKEN + f"GrpcHandler.{method}(..., {keyword}=...) raised {error!r}")
    assert prepared is prebuilt, BROKEN + f"GrpcHandler.{method} no longer sends {keyword} as it is"


def test_client_exposes_its_handler_and_stub():
    assert hasattr(MilvusClient, "_get_connection"), BROKEN + "MilvusClient._get_connection"
    assert "_stub" in inspect.getsource(GrpcHandler.__init__) or "_stub" in inspect.getsource(GrpcHandler), (
        BROKEN + "GrpcHandler._stub"
    )
