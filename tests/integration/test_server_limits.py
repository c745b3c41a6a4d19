"""Requests sized to the server and specs it would refuse (issue #14, cases 4-7)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from milvusdm.batch import Batch
from milvusdm.sinks.milvus import MAX_REQUEST_BYTES
from tests.conftest import SERVER_TOKEN, client_for, make_h5, manifest


def test_batches_are_split_by_bytes():
    batch = Batch(0, np.arange(10), np.zeros((10, MAX_REQUEST_BYTES // 16), dtype=np.float32))
    assert batch.nbytes() > 2 * MAX_REQUEST_BYTES
    parts = [batch.part(lo, lo + 3) for lo in range(0, 10, 3)]
    assert [p.start for p in parts] == [0, 3, 6, 9] and sum(len(p) for p in parts) == 10


@pytest.mark.server
def test_rows_over_grpcs_message_cap_in_one_batch_are_written(tmp_path, run_cli, milvus_server):
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    vectors = np.random.default_rng(4).random((600, 32768), dtype=np.float32)  # 78 MB in the default batch
    file = make_h5(tmp_path / "wide.h5", vectors)
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**target, "collection": "wide",
                                                                       "index": {"type": "FLAT"}}}, verify="count")
    result = run_cli("run", "-f", path, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"] == "count (600 rows)"
    client = client_for(target)  # a read of every vector would exceed the cap too
    rows = client.query("wide", filter="id in [0, 599]", output_fields=["vector"], consistency_level="Strong")
    client.close()
    assert {r["id"]: r["vector"] for r in rows}.keys() == {0, 599}
    np.testing.assert_array_equal(next(r["vector"] for r in rows if r["id"] == 599), vectors[599])
