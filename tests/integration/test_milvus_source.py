"""source.milvus: cluster-to-cluster copies and exports, schema and all, between two real servers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from pymilvus import DataType

from milvusdm.testing.interrupt import resume, run_until_killed
from tests.conftest import SERVER_TOKEN, client_for, manifest

pytestmark = pytest.mark.server
ROWS = 3000


def endpoint(server) -> dict:
    return {"uri": server.uri, "token": SERVER_TOKEN}


def make_collection(where: dict, name: str = "items", rows: int = ROWS, dim: int = 16, seed: int = 7, prefix: str = "sku") -> None:
    """Varchar keys, every scalar kind, JSON, arrays, dynamic keys, two partitions, an HNSW index."""
    rng = np.random.default_rng(seed)
    client = client_for(where)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=True, description="things for sale")
    schema.add_field("sku", DataType.VARCHAR, is_primary=True, max_length=32)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("in_stock", DataType.BOOL)
    schema.add_field("i8", DataType.INT8)
    schema.add_field("i16", DataType.INT16)
    schema.add_field("i32", DataType.INT32)
    schema.add_field("i64", DataType.INT64)
    schema.add_field("price", DataType.FLOAT)
    schema.add_field("weight", DataType.DOUBLE, description="in kg")
    schema.add_field("title", DataType.VARCHAR, max_length=200)
    schema.add_field("attrs", DataType.JSON)
    schema.add_field("sizes", DataType.ARRAY, element_type=DataType.INT32, max_capacity=4)
    schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=3, max_length=12)
    client.create_collection(name, schema=schema)
    client.create_partition(name, "archive")
    index = client.prepare_index_params()
    index.add_index("embedding", index_type="HNSW", metric_type="COSINE", params={"M": 8, "efConstruction": 64})
    client.create_index(name, index)
    vectors = rng.random((rows, dim), dtype=np.float32)
    data = [
        {
            "sku": f"{prefix}-{i:06d}", "embedding": vectors[i].tolist(), "in_stock": bool(i % 2), "i8": i % 100 - 50,
            "i16": i % 30000, "i32": i, "i64": 2**60 + i, "price": float(np.float32(i / 7)), "weight": i / 3,
            "title": f"item «{i}»", "attrs": {"colour": ["red", "blue"][i % 2], "n": i},
            "sizes": list(range(i % 5)), "tags": ["a", "b"][: i % 3], **({"note": f"dyn {i}"} if i % 4 else {}),
        }
        for i in range(rows)
    ]
    half = rows * 2 // 3
    client.insert(name, data[:half])
    client.insert(name, data[half:], partition_name="archive")
    client.flush(name)
    client.load_collection(name)
    client.close()


def rows_of(where: dict, name: str, partition: str | None = None, filter: str = 'sku >= ""') -> dict:
    client = client_for(where)
    client.load_collection(name)
    iterator = client.query_iterator(name, batch_size=1000, filter=filter, output_fields=["*"],
                                     partition_names=[partition] if partition else None)
    rows = {}
    while page := iterator.next():
        rows.update({row["sku"]: dict(row) for row in page})
    iterator.close()
    client.close()
    return rows


def shape_of(where: dict, name: str) -> dict:
    """What must survive a copy: fields with their types and parameters, settings, partitions, indexes."""
    client = client_for(where)
    info = client.describe_collection(name)
    indexes = [client.describe_index(name, i) for i in client.list_indexes(name)]
    shape = {
        "fields": [(f["name"], f["type"], f.get("params"), f.get("element_type"), f.get("is_primary", False),
                    f.get("description", "")) for f in info["fields"]],
        "dynamic": info["enable_dynamic_field"],
        "description": info["description"],
        "partitions": sorted(client.list_partitions(name)),
        "indexes": [(i["field_name"], i["index_type"], i["metric_type"], i.get("M"), i.get("efConstruction")) for i in indexes],
    }
    client.close()
    return shape


def run_ok(run_cli, path, *extra) -> dict:
    result = run_cli("run", "-f", path, "-q", "--json", "--state", path.parent / "state", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_collection_copied_between_servers_with_its_schema(tmp_path, run_cli, source_server, milvus_server):
    source, target = endpoint(source_server), endpoint(milvus_server)
    make_collection(source)
    path = manifest(tmp_path, {"milvus": {**source, "collection": "items"}},
                    {"milvus": {**target, "collection": "items_copy"}}, verify="full", batchSize=700)
    summary = run_ok(run_cli, path)
    assert summary["rows"] == ROWS and summary["verified"] == f"full ({ROWS} ids present, {ROWS} rows equal, count {ROWS})"

    assert shape_of(target, "items_copy") == shape_of(source, "items")
    for partition in ("_default", "archive"):
        assert rows_of(target, "items_copy", partition) == rows_of(source, "items", partition)
    copied = rows_of(target, "items_copy")
    assert copied["sku-000005"]["note"] == "dyn 5" and "note" not in copied["sku-000004"]
    assert copied["sku-000003"]["i64"] == 2**60 + 3 and copied["sku-000003"]["title"] == "item «3»"


def test_partition_subset_and_filter(tmp_path, run_cli, source_server, milvus_server):
    source, target = endpoint(source_server), endpoint(milvus_server)
    make_collection(source)
    chosen = "i32 % 3 == 0 and attrs['colour'] == 'red'"
    path = manifest(tmp_path, {"milvus": {**source, "collection": "items", "partitions": ["archive"], "filter": chosen}},
                    {"milvus": {**target, "collection": "some"}}, verify="full")
    summary = run_ok(run_cli, path)
    expected = rows_of(source, "items", "archive", chosen)
    assert summary["rows"] == len(expected) > 0
    assert rows_of(target, "some") == expected
    assert sorted(client_for(target).list_partitions("some")) == ["_default", "archive"]


def test_milvus_to_hdf5_folder_and_back_reproduces_the_collection(tmp_path, run_cli, source_server, milvus_server):
    source, target = endpoint(source_server), endpoint(milvus_server)
    make_collection(source)
    folder = tmp_path / "export"
    run_ok(run_cli, manifest(tmp_path, {"milvus": {**source, "collection": "items"}},
                             {"hdf5": {"path": f"{folder}/"}}, verify="full"))
    assert sorted(p.name for p in folder.iterdir()) == ["items__default.h5", "items_archive.h5"]
    with h5py.File(folder / "items_archive.h5") as f:
        assert f["ids"].shape == (ROWS - ROWS * 2 // 3,) and f["embeddings"].shape[1] == 16
        assert json.loads(f["attrs"].asstr()[0]) == {"colour": "red", "n": ROWS * 2 // 3}

    run_ok(run_cli, manifest(tmp_path, {"hdf5": {"paths": [f"{folder}/*.h5"]}},
                             {"milvus": {**target, "collection": "items"}}, verify="full"))
    assert shape_of(target, "items") == shape_of(source, "items")
    for partition in ("_default", "archive"):
        assert rows_of(target, "items", partition) == rows_of(source, "items", partition)


def test_lite_collection_exported_to_one_file(tmp_path, run_cli, lite):
    make_collection(lite, rows=300)
    export = tmp_path / "lite.h5"
    summary = run_ok(run_cli, manifest(tmp_path, {"milvus": {**lite, "collection": "items"}},
                                       {"hdf5": {"path": str(export)}}, verify="full"))
    assert summary["verified"] == "full (300 ids present, 300 rows equal, count 300)"
    with h5py.File(export) as f:
        assert list(f["ids"].asstr()[:2]) == ["sku-000000", "sku-000001"]
        assert json.loads(f.attrs["milvusdm_schema"])["partitions"] == [["_default", 200], ["archive", 100]]


@pytest.mark.parametrize(("mode", "code", "rows"), [("create", 2, 5), ("skip", 0, 5), ("append", 0, 5 + ROWS),
                                                    ("overwrite", 0, ROWS)])
def test_existing_target_per_mode(tmp_path, run_cli, source_server, milvus_server, mode, code, rows):
    source, target = endpoint(source_server), endpoint(milvus_server)
    make_collection(source)
    make_collection(target, rows=5, seed=1, prefix="old")
    path = manifest(tmp_path, {"milvus": {**source, "collection": "items"}}, {"milvus": {**target, "collection": "items", "mode": mode}},
                    verify="count")
    result = run_cli("run", "-f", path, "-q", "--state", tmp_path / "state")
    assert result.exit_code == code, result.stderr
    assert len(rows_of(target, "items")) == rows


@pytest.mark.parametrize(("change", "message"), [
    ({"collection": "nope"}, "source collection 'nope' does not exist"),
    ({"partitions": ["gone"]}, "has no partition 'gone' (partitions: _default, archive)"),
    ({"fields": ["sku", "title"]}, "include no vector field"),
    ({"uri": "http://127.0.0.1:9"}, "unreachable"),
    ({"token": "root:wrong"}, "refused the credentials"),
])
def test_bad_source(tmp_path, run_cli, source_server, milvus_server, change, message):
    make_collection(endpoint(source_server), rows=10)
    path = manifest(tmp_path, {"milvus": {**endpoint(source_server), "collection": "items", **change}},
                    {"milvus": {**endpoint(milvus_server), "collection": "never"}})
    result = run_cli("run", "-f", path, "-q", "--state", tmp_path / "state")
    assert result.exit_code != 0 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "never" not in client_for(endpoint(milvus_server)).list_collections()


@pytest.mark.parametrize("kill_after", [9_000, 31_000])
def test_killed_milvus_to_hdf5_export_resumes_to_the_same_data(tmp_path, source_server, kill_after):
    rows, dim = 40_000, 32
    source = endpoint(source_server)
    client = client_for(source)
    client.create_collection("big", dimension=dim, primary_field_name="id", vector_field_name="vector", auto_id=False)
    rng = np.random.default_rng(kill_after)
    ids, vectors = rng.choice(2**62, size=rows, replace=False).astype(np.int64), rng.random((rows, dim), dtype=np.float32)
    for lo in range(0, rows, 10_000):
        client.insert("big", [{"id": int(i), "vector": v.tolist()} for i, v in zip(ids[lo:lo + 10_000], vectors[lo:lo + 10_000])])
    client.flush("big")
    export = tmp_path / "big.h5"
    path = manifest(tmp_path, {"milvus": {**source, "collection": "big"}}, {"hdf5": {"path": str(export)}},
                    batchSize=1000, verify="full")
    killed_at = run_until_killed(path, tmp_path / "state", "test", kill_after)
    assert kill_after <= killed_at < rows and not export.exists()
    summary = resume(path, tmp_path / "state")
    assert summary["verified"] == f"full ({rows} ids present, {rows} rows equal, count {rows})"
    order = np.argsort(ids)
    with h5py.File(export) as f:
        np.testing.assert_array_equal(f["ids"][:], ids[order])
        np.testing.assert_array_equal(f["embeddings"][:], vectors[order])
