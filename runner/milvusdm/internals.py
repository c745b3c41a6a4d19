"""Every private API of pymilvus and protobuf that milvusdm relies on, in one place.

They are what makes the copy fast (prebuilt requests from numpy buffers, columnar query
responses, packed arrays parsed in one copy) and what a dependency upgrade can break without
notice. ``tests/unit/test_internals.py`` exercises each one and names this module when one
breaks, so an upgrade fails loudly in CI instead of quietly in a user's run.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.internal.decoder import _DecodeVarint
from google.protobuf.internal.encoder import _VarintBytes
from pymilvus import MilvusClient
from pymilvus.client.prepare import Prepare
from pymilvus.client.utils import check_status
from pymilvus.grpc_gen import milvus_pb2


def varint(value: int) -> bytes:
    """A protobuf base-128 varint (a length prefix of a packed field)."""
    return bytes(_VarintBytes(value))


def read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    """(value, position after it) of the varint at ``position``."""
    value, after = _DecodeVarint(buffer, position)
    return int(value), int(after)


def query_request(
    collection: str, expr: str, fields: list[str], partitions: list[str], consistency: int, **paging: Any
) -> milvus_pb2.QueryRequest:
    """pymilvus' own QueryRequest builder, with the iterator-mode paging keys it understands."""
    return Prepare.query_request(
        collection, expr, fields, partitions, use_default_consistency=False, consistency_level=consistency, **paging
    )


def _database(client: MilvusClient) -> list[tuple[str, Any]]:
    """The gRPC metadata naming the client's database (requests sent below the client need it)."""
    metadata: list[tuple[str, Any]] = client._generate_call_context().to_grpc_metadata()
    return metadata


def query(client: MilvusClient, request: milvus_pb2.QueryRequest, timeout: float) -> milvus_pb2.QueryResults:
    """Send a query and keep the columnar response (pymilvus would build a dict per row)."""
    response = client._get_connection()._stub.Query(request, timeout=timeout, metadata=_database(client))
    check_status(response.status)
    return response


def write(
    client: MilvusClient,
    collection: str,
    request: milvus_pb2.InsertRequest | milvus_pb2.UpsertRequest,
    described: dict[str, Any],
    timeout: float,
) -> None:
    """Send a prebuilt insert or upsert request through pymilvus' handler, which still applies
    auth, database and timestamps; its own retries are off (the caller's upsert on retry)."""
    connection = client._get_connection()
    options = {"schema": described, "timeout": timeout, "retry_times": 0, "context": client._generate_call_context()}
    if isinstance(request, milvus_pb2.UpsertRequest):
        connection.upsert(collection, [], upsert_param=request, **options)
    else:
        connection.batch_insert(collection, [], insert_param=request, **options)
