"""Connecting to Milvus (server or Lite) and telling transient failures from permanent ones."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import grpc
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from milvusdm.errors import InputError, TransientError
from milvusdm.spec import MilvusEndpoint

log = logging.getLogger(__name__)

TRANSIENT_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
AUTH_GRPC = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# pymilvus/Milvus codes: 2 = cannot connect, 8 = rate limited; and what a restarting server says
TRANSIENT_CODES = {2, 8}
TRANSIENT_WORDS = (
    "timeout", "unavailable", "deadline", "rate limit",
    # a restarting server: the proxy answers before its coordinators and nodes are back
    "node not found", "session not found", "not ready", "empty grpc client", "connection refused", "failed to connect",
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


def is_transient(error: BaseException) -> bool:
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
            "check the uri and that the server is up; rerun with --resume to continue",
        )
    return InputError(f"Milvus at {endpoint.uri} failed to {what}: {text}", "see the message above")


def retrying(seconds: float) -> Retrying:
    """Exponential backoff with jitter for transient errors, for at most ``seconds``."""
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.5, max=10),
        stop=stop_after_delay(seconds),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "transient error (attempt %d, retrying for up to %.0fs): %s",
            state.attempt_number,
            seconds,
            state.outcome.exception(),
        ),
    )


def connect(endpoint: MilvusEndpoint, role: Literal["source", "target"]) -> MilvusClient:
    if endpoint.is_lite:
        Path(endpoint.uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MilvusClient(uri=endpoint.uri, timeout=endpoint.timeout_seconds, **endpoint.credentials(role))
        client.list_collections(timeout=endpoint.timeout_seconds)
    except (MilvusException, grpc.RpcError, OSError) as error:
        raise classify(error, "connect", endpoint) from None
    return client
