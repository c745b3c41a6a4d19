"""source.milvus: cluster-to-cluster copies and exports, schema and all, between two real servers."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from pymilvus import DataType

from milvusdm.testing.interrupt import resume, run_until_killed
from tests.collections import ROWS, make_collection, rows_of
from tests.conftest import SERVER_TOKEN, client_for, manifest

pytestmark = pytest.mark.server


def endpoint(server) -> dict:
    return {"uri": server.uri, "token": SERVER_TOKEN}


def shape_of(where: dict, name: str) -> dict:
    """What must survive a copy: fields with their types and parameters, settings, partitions, indexes."""
    client = client_for(where)
    info = client.describe_collection(name)
    indexes = [client.describe_index(name, i) for i in client.list_indexes(name)]
    shape = {
        "fields": [
            (
                f["name"],
                f["type"],
                f.get("params"),
                f.get("element_type"),
                f.get("is_primary", False),
                f.get("description", ""),
            )
            for f in info["fields"]
        ],
        "dynamic": info["enable_dynamic_field"],
        "description": info["description"],
        "partitions": sorted(client.list_partitions(name)),
        "indexes": [
            (i["field_name"], i["index_type"], i["metric_type"], i.get("M"), i.get("efConstruction")) for i in indexes
        ],
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
    path = manifest(
        tmp_path,
        {"milvus": {**source, "collection": "items"}},
        {"milvus": {**target, "collection": "items_copy"}},
        verify="full",
        batchSize=700,
    )
    summary = run_ok(run_cli, path)
    assert (
        summary["rows"] == ROWS and summary["verified"] == f"full ({ROWS} ids present, {ROWS} rows equal, count {ROWS})"
    )

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
    path = manifest(
        tmp_path,
        {"milvus": {**source, "collection": "items", "partitions": ["archive"], "filter": chosen}},
        {"milvus": {**target, "collection": "some"}},
        verify="full",
    )
    summary = run_ok(run_cli, path)
    expected = rows_of(source, "items", "archive", chosen)
    assert summary["rows"] == len(expected) > 0
    assert rows_of(target, "some") == expected
    assert sorted(client_for(target).list_partitions("some")) == ["_default", "archive"]


def test_milvus_to_hdf5_folder_and_back_reproduces_the_collection(tmp_path, run_cli, source_server, milvus_server):
    source, target = endpoint(source_server), endpoint(milvus_server)
    make_collection(source)
    folder = tmp_path / "export"
    run_ok(
        run_cli,
        manifest(
            tmp_path, {"milvus": {**source, "collection": "items"}}, {"hdf5": {"path": f"{folder}/"}}, verify="full"
        ),
    )
    assert sorted(p.name for p in folder.iterdir()) == ["items__default.h5", "items_archive.h5"]
    with h5py.File(folder / "items_archive.h5") as f:
        assert f["ids"].shape == (ROWS - ROWS * 2 // 3,) and f["embeddings"].shape[1] == 16
        assert json.loads(f["attrs"].asstr()[0]) == {"colour": "red", "n": ROWS * 2 // 3}

    run_ok(
        run_cli,
        manifest(
            tmp_path,
            {"hdf5": {"paths": [f"{folder}/*.h5"]}},
            {"milvus": {**target, "collection": "items"}},
            verify="full",
        ),
    )
    assert shape_of(target, "items") == shape_of(source, "items")
    for partition in ("_default", "archive"):
        assert rows_of(target, "items", partition) == rows_of(source, "items", partition)


def test_lite_collection_exported_to_one_file(tmp_path, run_cli, lite):
    make_collection(lite, rows=300)
    export = tmp_path / "lite.h5"
    summary = run_ok(
        run_cli,
        manifest(tmp_path, {"milvus": {**lite, "collection": "items"}}, {"hdf5": {"path": str(export)}}, verify="full"),
    )
    assert summary["verified"] == "full (300 ids present, 300 rows equal, count 300)"
    with h5py.File(export) as f:
        assert list(f["ids"].asstr()[:2]) == ["sku-000000", "sku-000001"]
        assert json.loads(f.attrs["milvusdm_schema"])["partitions"] == [["_default", 200], ["archive", 100]]


@pytest.mark.parametrize(
    ("mode", "code", "rows"), [("create", 2, 5), ("skip", 0, 5), ("append", 0, 5 + ROWS), ("overwrite", 0, ROWS)]
)
def test_existing_target_per_mode(tmp_path, run_cli, source_server, milvus_server, mode, code, rows):
    source, target = endpoint(source_server), endpoint(milvus_server)
    make_collection(source)
    make_collection(target, rows=5, seed=1, prefix="old")
    path = manifest(
        tmp_path,
        {"milvus": {**source, "collection": "items"}},
        {"milvus": {**target, "collection": "items", "mode": mode}},
        verify="count",
    )
    result = run_cli("run", "-f", path, "-q", "--state", tmp_path / "state")
    assert result.exit_code == code, result.stderr
    assert len(rows_of(target, "items")) == rows


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"collection": "nope"}, "source collection 'nope' does not exist"),
        ({"partitions": ["gone"]}, "has no partition 'gone' (partitions: _default, archive)"),
        ({"fields": ["sku", "title"]}, "include no vector field"),
        ({"uri": "http://127.0.0.1:9"}, "unreachable"),
        ({"token": "root:wrong"}, "refused the credentials"),
    ],
)
def test_bad_source(tmp_path, run_cli, source_server, milvus_server, change, message):
    make_collection(endpoint(source_server), rows=10)
    path = manifest(
        tmp_path,
        {"milvus": {**endpoint(source_server), "collection": "items", **change}},
        {"milvus": {**endpoint(milvus_server), "collection": "never"}},
    )
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
    ids, vectors = (
        rng.choice(2**62, size=rows, replace=False).astype(np.int64),
        rng.random((rows, dim), dtype=np.float32),
    )
    for lo in range(0, rows, 10_000):
        client.insert(
            "big",
            [
                {"id": int(i), "vector": v.tolist()}
                for i, v in zip(ids[lo : lo + 10_000], vectors[lo : lo + 10_000], strict=True)
            ],
        )
    client.flush("big")
    export = tmp_path / "big.h5"
    path = manifest(
        tmp_path,
        {"milvus": {**source, "collection": "big"}},
        {"hdf5": {"path": str(export)}},
        batchSize=1000,
        verify="full",
    )
    killed_at = run_until_killed(path, tmp_path / "state", "test", kill_after)
    assert kill_after <= killed_at < rows and not export.exists()
    summary = resume(path, tmp_path / "state")
    assert summary["verified"] == f"full ({rows} ids present, {rows} rows equal, count {rows})"
    order = np.argsort(ids)
    with h5py.File(export) as f:
        np.testing.assert_array_equal(f["ids"][:], ids[order])
        np.testing.assert_array_equal(f["embeddings"][:], vectors[order])


def test_auto_id_binary_collection_keeps_ids_and_takes_an_index_override(
    tmp_path, run_cli, source_server, milvus_server
):
    source, target = endpoint(source_server), endpoint(milvus_server)
    client = client_for(source)
    schema = client.create_schema(auto_id=True)
    schema.add_field("pk", DataType.INT64, is_primary=True, auto_id=True)
    schema.add_field("bits", DataType.BINARY_VECTOR, dim=64)
    client.create_collection("hashes", schema=schema)
    index = client.prepare_index_params()
    index.add_index("bits", index_type="BIN_IVF_FLAT", metric_type="JACCARD", params={"nlist": 4})
    client.create_index("hashes", index)
    codes = np.random.default_rng(3).integers(0, 256, (500, 8), dtype=np.uint8)
    client.insert("hashes", [{"bits": c.tobytes()} for c in codes])
    client.flush("hashes")
    path = manifest(
        tmp_path,
        {"milvus": {**source, "collection": "hashes"}},
        {"milvus": {**target, "collection": "hashes", "index": {"type": "BIN_FLAT"}, "metric": "HAMMING"}},
        verify="full",
    )
    summary = run_ok(run_cli, path)
    assert summary["verified"] == "full (500 ids present, 500 rows equal, count 500)"
    assert any("auto_id" in warning for warning in summary["warnings"])
    copied, original = client_for(target), client_for(source)
    assert not copied.describe_collection("hashes")["auto_id"]
    index = copied.describe_index("hashes", copied.list_indexes("hashes")[0])
    assert (index["index_type"], index["metric_type"]) == ("BIN_FLAT", "HAMMING")
    ids = lambda c: sorted(r["pk"] for r in c.query("hashes", filter="pk >= 0", output_fields=["pk"], limit=1000))  # noqa: E731
    assert ids(copied) == ids(original)


def test_filters_that_match_nothing_or_name_no_field(tmp_path, run_cli, source_server, milvus_server):
    source, target = endpoint(source_server), endpoint(milvus_server)
    client = client_for(source)
    client.create_collection("plain", dimension=4, auto_id=False, enable_dynamic_field=False)
    client.insert("plain", [{"id": i, "vector": [float(i)] * 4} for i in range(10)])
    client.close()
    nothing = manifest(
        tmp_path,
        {"milvus": {**source, "collection": "plain", "filter": "id > 100"}},
        {"milvus": {**target, "collection": "plain_none"}},
    )
    summary = run_ok(run_cli, nothing)
    assert summary["rows"] == 0
    assert summary["warnings"] == ["0 rows matched source.milvus.filter 'id > 100': the target is created empty"]
    missing = manifest(
        tmp_path,
        {"milvus": {**source, "collection": "plain", "filter": "colour == 'red'"}},
        {"milvus": {**target, "collection": "plain_missing"}},
    )
    result = run_cli("run", "-f", missing, "-q", "--state", tmp_path / "state")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "source.milvus.filter" in result.stderr, result.stderr
    assert "plain_missing" not in client_for(target).list_collections()
