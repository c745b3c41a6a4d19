"""Connecting to Milvus (server or Lite) and telling transient failures from permanent ones."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import schema_pb2
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from milvusdm import indexes, internals, tls
from milvusdm.errors import InputError, TransientError
from milvusdm.schema import Column
from milvusdm.spec import MilvusEndpoint, MilvusSource, MilvusTarget
from milvusdm.wire import take

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
AUTH_GRPC = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# pymilvus/Milvus codes: 2 = cannot connect, 8 = rate limited; and what a restarting server says
TRANSIENT_CODES = {2, 8}
RETRY_SECONDS = 120  # long enough for a Milvus restart or a leader change
QUERY_WINDOW = 16_384  # Milvus caps offset + limit of one query
MAX_MESSAGE_BYTES = 32 << 20  # half of gRPC's 64 MB message cap: room for the protobuf framing
STRONG, EVENTUALLY = 0, 3  # common_pb2.ConsistencyLevel
TRANSIENT_WORDS = (
    "timeout",
    "unavailable",
    "deadline",
    "rate limit",
    # a restarting server: the proxy answers before its coordinators and nodes are back
    "node not found",
    "session not found",
    "not ready",
    "empty grpc client",
    "connection refused",
    "failed to connect",
)


def _rpc_cause(error: BaseException | None) -> grpc.RpcError | None:
    """The gRPC error under pymilvus' wrapping (it reports bad credentials as "cannot connect")."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
            return error
        error = error.__cause__ or error.__context__
    return None


def rows_per_message(columns: Sequence[Column], wanted: int) -> int:
    """At most ``wanted`` rows, and no more than one gRPC message holds, in a request or a
    response (vectors are what makes rows wide: 600 of 32768 floats are 78 MB)."""
    row = 64 + sum(c.dim * c.type.bits // 8 for c in columns if c.is_vector and c.dim)
    return max(1, min(wanted, MAX_MESSAGE_BYTES // row))


def is_transient(error: BaseException) -> bool:
    """Worth retrying; RESOURCE_EXHAUSTED about a message's size is not (the same request fails again)."""
    if "larger than max" in str(error).lower():
        return False
    if isinstance(error, grpc.RpcError):
        return error.code() in TRANSIENT_GRPC
    if isinstance(error, MilvusException):
        text = str(error.message).lower()
        return error.code in TRANSIENT_CODES or any(word in text for word in TRANSIENT_WORDS)
    return isinstance(error, (ConnectionError, TimeoutError))


def classify(error: BaseException, what: str, endpoint: MilvusEndpoint) -> Exception:
    """Turn a pymilvus/gRPC error into one line for the user."""
    text = str(getattr(error, "message", None) or error)
    cause = _rpc_cause(error)
    if cause is not None and cause.code() in AUTH_GRPC:
        return InputError(
            f"Milvus at {endpoint.uri} refused the credentials while trying to {what}: {cause.details()}",
            "check the token or user/password (manifest, Secret or MILVUSDM_*_TOKEN)",
        )
    if is_transient(error):
        return TransientError(
            f"Milvus at {endpoint.uri} is unreachable while trying to {what}: {text}",
            "check the uri and that the server is up",
        )
    return InputError(
        f"Milvus at {endpoint.uri} failed to {what}: {text}", "correct what the server names, then run again"
    )


def retrying(seconds: float) -> Retrying:
    """Exponential backoff with jitter for transient errors, for at most ``seconds``."""
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.5, max=10),
        stop=stop_after_delay(seconds),
        reraise=True,
        before_sleep=lambda state: _log_retry(state, seconds),
    )


def _log_retry(state: RetryCallState, seconds: float) -> None:
    # tenacity sets the outcome before it sleeps; its type admits None only for a call not yet made
    error = state.outcome.exception() if state.outcome is not None else None
    log.warning("transient error (attempt %d, retrying for up to %.0fs): %s", state.attempt_number, seconds, error)


def literal(value: Any) -> str:
    """A key value in a Milvus expression: ints as they are, strings quoted."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(int(value))


def everything(key: Column) -> str:
    """An always-true filter on the key. (Milvus Lite ignores partition_names on a filterless
    count(*), and servers cannot parse the literal -2**63.)"""
    if key.dtype == DataType.VARCHAR:
        return f'{key.name} >= ""'
    return f"{key.name} >= {1 - 2**63} || {key.name} < 0"


def collection_identity(milvus: Connection, collection: str) -> str:
    """What a collection is, however its server is spelled: a server's collection id (unique per
    cluster, from its timestamp oracle), or Milvus Lite's resolved folder and the name."""
    if milvus.endpoint.is_lite:
        return f"lite:{Path(milvus.endpoint.uri).expanduser().resolve()}:{milvus.endpoint.database}.{collection}"
    info = milvus.retry("describe the collection", milvus.client.describe_collection, collection)
    return f"milvus:{info['collection_id']}:{info.get('created_timestamp', '')}"


def connect(endpoint: MilvusEndpoint, role: Literal["source", "target"]) -> MilvusClient:
    if endpoint.is_lite:
        Path(endpoint.uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        client = _client(endpoint, role, "default")
        client.list_collections(timeout=endpoint.timeout_seconds)
        if endpoint.database != "default":
            _ensure_database(client, endpoint, role)
            client.close()
            client = _client(endpoint, role, endpoint.database)
    except (MilvusException, grpc.RpcError, OSError) as error:
        raise tls.diagnose(endpoint, role) or classify(error, "connect", endpoint) from None
    return client


def _client(endpoint: MilvusEndpoint, role: Literal["source", "target"], database: str) -> MilvusClient:
    # A database is named at connection time: the 2.3 servers lack DescribeDatabase, which use_database calls.
    name = "" if database == "default" else database
    return MilvusClient(
        uri=endpoint.uri,
        timeout=endpoint.timeout_seconds,
        db_name=name,
        **endpoint.credentials(role),
        **tls.client_options(endpoint, role),
    )


def _ensure_database(client: MilvusClient, endpoint: MilvusEndpoint, role: Literal["source", "target"]) -> None:
    """A source's database must exist; a target's is created if it is missing."""
    present = client.list_databases(timeout=endpoint.timeout_seconds)
    if endpoint.database not in present:
        if role == "source":
            raise InputError(
                f"database {endpoint.database!r} does not exist at {endpoint.uri} (databases: {', '.join(present)})",
                "check source.milvus.database",
            )
        client.create_database(endpoint.database, timeout=endpoint.timeout_seconds)


class OneCollection:
    """What a Milvus source and sink share: the connection made when opened, and the one
    collection of their spec (a manifest naming many is planned into one of them per collection)."""

    spec: MilvusSource | MilvusTarget
    _milvus: Connection | None = None

    def describe(self) -> str:  # the source's and the sink's own
        return type(self).__name__

    @property
    def milvus(self) -> Connection:
        if self._milvus is None:
            raise RuntimeError(f"{self.describe()} is not connected")
        return self._milvus

    @property
    def collection(self) -> str:
        if self.spec.collection is None:
            raise RuntimeError(f"{self.describe()} names no single collection")
        return self.spec.collection


class Connection:
    """A client for one endpoint: errors become one line, idempotent calls are retried."""

    def __init__(self, endpoint: MilvusEndpoint, role: Literal["source", "target"]) -> None:
        self.endpoint = endpoint
        self.client = connect(endpoint, role)

    @functools.cached_property
    def version(self) -> tuple[int, ...] | None:
        """The server's release, e.g. (2, 3, 5); None for Milvus Lite."""
        if self.endpoint.is_lite:
            return None
        return indexes.server_version(self.retry("read the server's version", self.client.get_server_version))

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A one-shot call."""
        try:
            return fn(*args, **kwargs)
        except (MilvusException, grpc.RpcError) as error:
            raise classify(error, what, self.endpoint) from None

    def retry(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A call that is safe to repeat: retried through transient failures."""
        try:
            return retrying(RETRY_SECONDS)(fn, *args, **kwargs)
        except (MilvusException, grpc.RpcError) as error:
            raise classify(error, what, self.endpoint) from None

    def query(
        self,
        collection: str,
        expr: str,
        columns: list[Column],
        partitions: list[str] | None = None,
        limit: int | None = None,
        strong: bool = False,
    ) -> list[np.ndarray]:
        """Matching rows as one array per column; with a ``limit``, the first rows by key
        (the server's iterator mode sorts them)."""
        paging = {"limit": limit, "iterator": "True", "reduce_stop_for_best": "True"} if limit else {}
        request = internals.query_request(
            collection, expr, [c.name for c in columns], partitions or [], STRONG if strong else EVENTUALLY, **paging
        )
        send = lambda: internals.query(self.client, request, self.endpoint.timeout_seconds)  # noqa: E731
        response = self.retry(f"read {collection}", send)
        found = {field.field_name: field for field in response.fields_data}
        return [take(found.get(c.name, schema_pb2.FieldData()), c) for c in columns]

    def close(self) -> None:
        self.client.close()
