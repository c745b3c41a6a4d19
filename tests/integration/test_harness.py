"""The suite's own guards: a session server that stops serving is started again, its logs and data
kept, and servers take ports no outgoing connection can hold."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from pymilvus import MilvusClient

from milvusdm.testing.milvus_server import PORTS_USED, free_port_block
from tests.conftest import SERVER_TOKEN, healthy


def test_a_killed_session_server_is_restarted_with_its_logs_kept(milvus_server):
    pid, port = milvus_server.pid, milvus_server.port
    assert pid is not None and milvus_server.serving()
    kept = set(milvus_server.base_dir.glob("crashed-*"))
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while milvus_server.alive and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not milvus_server.serving()
    with pytest.warns(UserWarning, match="had died; restarted"):
        healthy(milvus_server)
    assert milvus_server.serving() and milvus_server.pid != pid
    assert milvus_server.port != port  # no client keeps a channel to the dead address in backoff
    (old,) = set(milvus_server.base_dir.glob("crashed-*")) - kept
    assert (old / "logs" / "milvus-stdout.log").stat().st_size > 0 and (old / "data").is_dir()
    client = MilvusClient(uri=milvus_server.uri, token=SERVER_TOKEN)
    assert isinstance(client.list_collections(), list)
    client.close()


def test_port_blocks_lie_below_the_ephemeral_range():
    """Outgoing connections take their local ports from the ephemeral range; a server's block
    there can lose a port to one of them before a restart binds it again."""
    floor = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        base = free_port_block()
        assert base >= 20000 and base + PORTS_USED + 8 <= floor
