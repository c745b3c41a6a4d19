"""Requests sized to the server and specs it would refuse (issue #14, cases 4-7)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from milvusdm import verification
from milvusdm.batch import Batch
from milvusdm.milvus import MAX_MESSAGE_BYTES
from milvusdm.sinks import milvus as milvus_sink
from tests.conftest import SERVER_TOKEN, client_for, make_h5, manifest


def test_batches_are_split_by_bytes():
    batch = Batch(0, np.arange(10), np.zeros((10, MAX_MESSAGE_BYTES // 16), dtype=np.float32))
    assert batch.nbytes() > 2 * MAX_MESSAGE_BYTES
    parts = [batch.part(lo, lo + 3) for lo in range(0, 10, 3)]
    assert [p.start for p in parts] == [0, 3, 6, 9] and sum(len(p) for p in parts) == 10


@pytest.mark.server
def test_rows_over_grpcs_message_cap_in_one_batch_are_written(tmp_path, run_cli, milvus_server):
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    vectors = np.random.default_rng(4).random((600, 32768), dtype=np.float32)  # 78 MB in the default batch
    file = make_h5(tmp_path / "wide.h5", vectors)
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file)}},
        {"milvus": {**target, "collection": "wide", "index": {"type": "FLAT"}}},
        verify="full",
    )
    result = run_cli("run", "-f", path, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"] == "full (600 ids present, 600 rows equal, count 600)"
    client = client_for(target)  # a read of every vector would exceed the cap too
    rows = client.query("wide", filter="id in [0, 599]", output_fields=["vector"], consistency_level="Strong")
    client.close()
    assert {r["id"]: r["vector"] for r in rows}.keys() == {0, 599}
    np.testing.assert_array_equal(next(r["vector"] for r in rows if r["id"] == 599), vectors[599])
    export = manifest(  # and read back as a source, in pages below the cap too
        tmp_path, {"milvus": {**target, "collection": "wide"}}, {"hdf5": {"path": str(tmp_path / "back.h5")}}
    )
    result = run_cli("run", "-f", export, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    with h5py.File(tmp_path / "back.h5") as back:
        order = np.argsort(back["ids"][:])
        np.testing.assert_array_equal(back["embeddings"][:][order], vectors)


def test_a_metric_the_vectors_cannot_take_is_refused_before_creating(tmp_path, run_cli, lite, rng):
    file = make_h5(tmp_path / "f.h5", rng.random((50, 8), dtype=np.float32))
    path = manifest(
        tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "c", "metric": "HAMMING"}}
    )
    result = run_cli("run", "-f", path, "-q")
    assert result.exit_code == 2 and "metric HAMMING does not fit 'vector', a FLOAT_VECTOR field" in result.stderr
    client = client_for(lite)
    assert client.list_collections() == []
    client.close()


@pytest.mark.parametrize(
    ("index", "words"),
    [
        ({"type": "NOPE"}, "unknown index type 'NOPE'"),
        ({"type": "HNSW", "params": {"M": -1}}, "HNSW parameter M is -1"),
    ],
)
def test_validate_refuses_an_index_the_server_would(tmp_path, run_cli, lite, index, words):
    path = manifest(tmp_path, {"hdf5": {"path": "x.h5"}}, {"milvus": {**lite, "collection": "c", "index": index}})
    result = run_cli("validate", "-f", path)
    assert result.exit_code == 2 and words in result.stderr


@pytest.mark.server
def test_lite_ivf_index_without_nlist_copies_to_a_server(tmp_path, run_cli, lite, milvus_server):
    from pymilvus import DataType

    client = client_for(lite)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=8)
    client.create_collection("ivf", schema=schema)
    index = client.prepare_index_params()
    index.add_index("vector", index_type="IVF_FLAT", metric_type="IP", params={"nlist": 64})
    client.create_index("ivf", index)
    client.insert("ivf", [{"id": i, "vector": [float(i % 5) + 1] * 8} for i in range(300)])
    assert "nlist" not in client.describe_index("ivf", "vector")  # Lite forgets it
    client.close()
    server = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    path = manifest(tmp_path, {"milvus": {**lite, "collection": "ivf"}}, {"milvus": {**server, "collection": "ivf"}})
    result = run_cli("run", "-f", path, "-q")
    assert result.exit_code == 0, result.stderr
    target = client_for(server)
    described = target.describe_index("ivf", target.list_indexes("ivf")[0])
    target.close()
    assert (
        described["index_type"] == "IVF_FLAT" and described["metric_type"] == "IP" and str(described["nlist"]) == "128"
    )


def test_the_lowest_int64_key_is_refused_before_writing(tmp_path, run_cli, lite, rng):
    ids = np.array([-(2**63), 1, 2], dtype=np.int64)
    file = make_h5(tmp_path / "low.h5", rng.random((3, 4), dtype=np.float32), ids)
    result = run_cli(
        "run", "-f", manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "c"}}), "-q"
    )
    assert result.exit_code == 2 and "-2**63" in result.stderr
    client = client_for(lite)
    assert client.list_collections() == []
    client.close()


@pytest.mark.server
@pytest.mark.parametrize("mode", ["ids", "full"])
def test_the_target_scan_ranges_cover_every_key_once(tmp_path, run_cli, milvus_server, rng, monkeypatch, mode):
    """A server's scan reads key ranges cut from the copied keys' span in two lanes, a range in
    one query when its count fits, else in pages: here a dense cluster is paged, the sparse
    ranges are read whole, keys sit at both int64 ends and around zero. A key left out of
    every range, or read by two, fails the digest."""
    monkeypatch.setattr(milvus_sink, "KEYS_PER_READ", 400)
    monkeypatch.setattr(verification, "SCAN_BATCH", 400)
    reads = {"ranges": 0, "pages": 0}
    ranged, paged = milvus_sink.MilvusSink._count, milvus_sink.MilvusSink._pages

    def count(self, within, partitions, strong=True):
        reads["ranges"] += " and " in within
        return ranged(self, within, partitions, strong)

    def pages(self, whole, size, within=None):
        reads["pages"] += within is not None
        return paged(self, whole, size, within)

    monkeypatch.setattr(milvus_sink.MilvusSink, "_count", count)
    monkeypatch.setattr(milvus_sink.MilvusSink, "_pages", pages)
    edges = [-(2**63) + 1, -(2**63) + 2, -3, -2, -1, 0, 1, 2, 2**63 - 3, 2**63 - 2]
    spread = rng.integers(-(2**62), 2**62, 1000, dtype=np.int64)
    ids = np.unique(np.concatenate([np.array(edges, dtype=np.int64), spread, np.arange(10, 2010, dtype=np.int64)]))
    file = make_h5(tmp_path / "signs.h5", rng.random((len(ids), 4), dtype=np.float32), ids)
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN, "collection": "signs", "index": {"type": "FLAT"}}
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": target}, verify=mode)
    result = run_cli("run", "-f", path, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    equal = f", {len(ids)} rows equal" if mode == "full" else ""
    assert json.loads(result.stdout)["verified"] == f"{mode} ({len(ids)} ids present{equal}, count {len(ids)})"
    assert reads["ranges"] > 2 and reads["pages"] == 1  # the cluster's range alone holds more than a read


def test_an_index_build_the_server_fails_fails_the_run(tmp_path, run_cli, lite, rng, monkeypatch):
    """Indexes are built asynchronously: a failed build shows only in the index's state, which
    finish reads while it waits for the builds."""
    from pymilvus import MilvusClient

    described = MilvusClient.describe_index
    monkeypatch.setattr(
        MilvusClient, "describe_index", lambda *a, **k: {**(described(*a, **k) or {}), "state": "Failed"}
    )
    file = make_h5(tmp_path / "f.h5", rng.random((50, 8), dtype=np.float32))
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "c"}})
    result = run_cli("run", "-f", path, "-q")
    assert result.exit_code == 1 and "the server failed to build the index" in result.stderr, result.stderr
