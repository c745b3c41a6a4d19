"""Which Milvus errors are worth a retry."""

from pymilvus.exceptions import MilvusException

from milvusdm.milvus import is_transient


def test_restarting_server_errors_are_transient():
    restarting = (
        'empty grpc client: failed to connect 127.0.0.1:24669, reason: connection error: desc = "connection refused"'
    )
    assert is_transient(MilvusException(code=65535, message=restarting))
    assert is_transient(MilvusException(code=1, message="session not found->datanode-1: node not found[node=1]"))
    assert not is_transient(MilvusException(code=1100, message="collection not found[collection=x]"))


def test_a_request_over_the_message_cap_is_permanent():
    oversize = (
        "<_InactiveRpcError: StatusCode.RESOURCE_EXHAUSTED, Sent message larger than max (78643590 vs. 67108864)>"
    )
    assert not is_transient(MilvusException(code=8, message=oversize))
    assert is_transient(MilvusException(code=8, message="rate limit exceeded"))
