"""source.parquet and target.parquet: exports that re-import exactly and that Milvus' own bulk
import reads, VectorDBBench and Pinecone files, bad input, resume, and S3."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pymilvus import DataType, connections, utility

from milvusdm.arrow import SCHEMA_KEY
from milvusdm.sources.parquet import ParquetSource
from milvusdm.spec import ParquetSource as ParquetSpec
from milvusdm.testing.interrupt import resume, run_until_killed
from tests.collections import ROWS, make_collection, rows_of
from tests.conftest import SERVER_TOKEN, client_for, manifest, read_back
from tests.integration.test_milvus_source import shape_of


def run(run_cli, path, code=0):
    result = run_cli("run", "-f", path, "-q", "--json", "--state", path.parent / "state")
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout) if code == 0 else result.stderr.strip()


def import_parquet(run_cli, tmp_path, settings: dict, target: dict, collection: str, **spec) -> dict:
    """source.parquet with ``settings`` into ``collection``, verified in full; the run's summary."""
    source, into = {"parquet": settings}, {"milvus": {**target, "collection": collection}}
    return run(run_cli, manifest(tmp_path, source, into, verify="full", **spec))


def vectors_column(vectors: np.ndarray) -> pa.ListArray:
    rows, dim = vectors.shape
    return pa.ListArray.from_arrays(
        pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32)), pa.array(vectors.reshape(-1))
    )


def endpoint(server) -> dict:
    return {"uri": server.uri, "token": SERVER_TOKEN}


@pytest.mark.server
def test_milvus_to_parquet_folder_and_back_reproduces_the_collection(tmp_path, run_cli, milvus_server):
    server = endpoint(milvus_server)
    make_collection(server)
    folder = tmp_path / "export"
    run(
        run_cli,
        manifest(
            tmp_path,
            {"milvus": {**server, "collection": "items"}},
            {"parquet": {"path": f"{folder}/"}},
            verify="full",
            batchSize=700,
        ),
    )
    assert sorted(p.name for p in folder.iterdir()) == ["items__default.parquet", "items_archive.parquet"]
    archive = pq.ParquetFile(folder / "items_archive.parquet")
    assert archive.metadata.num_rows == ROWS - ROWS * 2 // 3
    assert archive.schema_arrow.field("embedding").type == pa.list_(pa.float32())
    assert archive.schema_arrow.names[:2] == ["sku", "embedding"] and "$meta" in archive.schema_arrow.names
    first = archive.read_row_group(0).slice(0, 1).to_pylist()[0]
    assert (
        json.loads(first["attrs"]) == {"colour": "red", "n": ROWS * 2 // 3}
        and first["sizes"] == [0, 1, 2, 3, 4][: (ROWS * 2 // 3) % 5]
    )
    assert json.loads(archive.schema_arrow.metadata[SCHEMA_KEY])["partitions"] == [["archive", ROWS - ROWS * 2 // 3]]

    run(
        run_cli,
        manifest(
            tmp_path,
            {"parquet": {"paths": [f"{folder}/"]}},
            {"milvus": {**server, "collection": "copy"}},
            verify="full",
        ),
    )
    assert shape_of(server, "copy") == shape_of(server, "items")
    for partition in ("_default", "archive"):
        assert rows_of(server, "copy", partition) == rows_of(server, "items", partition)
    assert rows_of(server, "copy")["sku-000005"]["note"] == "dyn 5"


@pytest.mark.server
def test_export_imported_by_milvus_bulk_insert(tmp_path, run_cli, milvus_server):
    """Milvus' own import reads the files: they must be in the server's storage, which for the
    embedded server is its local storage folder (``localStorage.path``, storageType local)."""
    server = endpoint(milvus_server)
    make_collection(server)
    make_collection(server, "bulk", rows=0)
    folder = milvus_server.base_dir / "data" / "bulk-import"
    run(run_cli, manifest(tmp_path, {"milvus": {**server, "collection": "items"}}, {"parquet": {"path": f"{folder}/"}}))
    connections.connect("bulk", uri=milvus_server.uri, token=SERVER_TOKEN)
    try:
        tasks = [
            utility.do_bulk_insert(
                "bulk", files=[str(folder / f"items_{partition}.parquet")], partition_name=partition, using="bulk"
            )
            for partition in ("_default", "archive")
        ]
        deadline = time.monotonic() + 120
        states = [utility.get_bulk_insert_state(t, using="bulk") for t in tasks]
        while not all(s.state_name in ("Completed", "Failed") for s in states) and time.monotonic() < deadline:
            time.sleep(1)
            states = [utility.get_bulk_insert_state(t, using="bulk") for t in tasks]
        assert [s.state_name for s in states] == ["Completed", "Completed"], [s.failed_reason for s in states]
    finally:
        connections.disconnect("bulk")
    client = client_for(server)
    client.release_collection("bulk")  # imported segments are served once the collection is loaded again
    client.close()
    for partition in ("_default", "archive"):
        assert rows_of(server, "bulk", partition) == rows_of(server, "items", partition)


def test_vectordbbench_train_file(tmp_path, run_cli, lite, rng):
    vectors = rng.random((3000, 24), dtype=np.float32)
    ids = rng.choice(2**40, size=3000, replace=False)
    pq.write_table(
        pa.table({"id": ids, "emb": vectors_column(vectors)}), tmp_path / "train.parquet", row_group_size=700
    )
    summary = import_parquet(run_cli, tmp_path, {"path": str(tmp_path / "train.parquet")}, lite, "vdb", batchSize=1000)
    assert summary["verified"] == "full (3000 ids present, 3000 rows equal, count 3000)"
    found, rows = read_back(lite, "vdb")
    np.testing.assert_array_equal(found, np.sort(ids))
    np.testing.assert_array_equal(rows[int(ids[2100])]["vector"], vectors[2100])

    export = tmp_path / "vdb.parquet"  # an int64-keyed collection out and in again
    run(
        run_cli,
        manifest(
            tmp_path, {"milvus": {**lite, "collection": "vdb"}}, {"parquet": {"path": str(export)}}, verify="full"
        ),
    )
    import_parquet(run_cli, tmp_path, {"path": str(export)}, lite, "again")
    assert read_back(lite, "again")[1] == rows


def test_pinecone_file_keys_strings_and_metadata_as_dynamic_fields(tmp_path, run_cli, lite, rng):
    vectors = rng.random((500, 8))
    metadata = [json.dumps({"genre": ["drama", "comedy"][i % 2], "year": 2000 + i % 20}) for i in range(500)]
    table = pa.table({"id": [f"doc-{i}" for i in range(500)], "values": list(vectors), "metadata": metadata})
    pq.write_table(table.replace_schema_metadata({"metric": "cosine"}), tmp_path / "pinecone.parquet")
    import_parquet(run_cli, tmp_path, {"path": str(tmp_path / "pinecone.parquet")}, lite, "pc")
    client = client_for(lite)
    info = client.describe_collection("pc")
    assert info["enable_dynamic_field"] and (info["fields"][0]["name"], info["fields"][0]["type"]) == (
        "id",
        DataType.VARCHAR,
    )
    assert client.describe_index("pc", "vector")["metric_type"] == "COSINE"
    dramas = client.query("pc", filter='genre == "drama" and year == 2004', output_fields=["vector"])
    assert sorted(r["id"] for r in dramas) == sorted(f"doc-{i}" for i in range(500) if i % 2 == 0 and i % 20 == 4)
    np.testing.assert_allclose(dramas[0]["vector"], vectors[int(dramas[0]["id"][4:])].astype(np.float32))
    client.close()


@pytest.mark.parametrize("ids", ["key", None])
def test_settings_pick_the_vector_id_and_field_columns(tmp_path, run_cli, lite, rng, ids):
    """Two list columns could be the vectors and ``key`` is no default id name: ``vectors`` and
    ``fields`` pick columns, ``ids`` the key; without it rows are numbered 0..N-1 across the files."""
    keys = rng.choice(2**40, size=500, replace=False)
    alt, emb, price = rng.random((500, 8), dtype=np.float32), rng.random((500, 6)), rng.random(500)
    paths = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    for path, rows in zip(paths, (slice(0, 300), slice(300, 500)), strict=True):
        columns = {"key": keys[rows], "emb": vectors_column(emb[rows]), "alt": vectors_column(alt[rows])}
        pq.write_table(pa.table(columns | {"price": price[rows], "note": ["n"] * len(keys[rows])}), path)
    settings = {"paths": paths, "vectors": "alt", "fields": ["price"]} | ({"ids": ids} if ids else {})
    summary = import_parquet(run_cli, tmp_path, settings, lite, "picked")
    assert summary["verified"] == "full (500 ids present, 500 rows equal, count 500)"
    expected = keys if ids else np.arange(500)
    found, rows = read_back(lite, "picked")
    np.testing.assert_array_equal(found, np.sort(expected))
    for i in (0, 299, 300, 499):
        row = rows[int(expected[i])]
        assert set(row) == {"id", "vector", "price"} and row["price"] == pytest.approx(price[i])
        np.testing.assert_array_equal(row["vector"], alt[i])


@pytest.mark.parametrize("meta", ["json text", "struct"])
def test_a_meta_column_of_a_plain_file_becomes_the_dynamic_field(tmp_path, run_cli, lite, rng, meta):
    values = [{"colour": ["red", "blue"][i % 2], "n": i} for i in range(200)]
    column = pa.array([json.dumps(v) for v in values]) if meta == "json text" else pa.array(values)
    vectors = vectors_column(rng.random((200, 4), dtype=np.float32))
    pq.write_table(pa.table({"id": np.arange(200), "emb": vectors, "$meta": column}), tmp_path / "meta.parquet")
    import_parquet(run_cli, tmp_path, {"path": str(tmp_path / "meta.parquet")}, lite, "meta")
    client = client_for(lite)
    info = client.describe_collection("meta")
    assert info["enable_dynamic_field"] and [f["name"] for f in info["fields"]] == ["id", "vector"]
    blues = client.query("meta", filter='colour == "blue" and n < 10', output_fields=["n"])
    assert sorted((r["id"], r["n"]) for r in blues) == [(i, i) for i in (1, 3, 5, 7, 9)]
    client.close()


@pytest.mark.server
def test_binary_vectors_into_milvus_and_out_to_parquet(tmp_path, run_cli, milvus_server, rng):
    """Fixed-size binary in; out as lists of bytes (Milvus' import layout), which re-import exactly.
    On the server: Milvus Lite has no binary vectors."""
    server = endpoint(milvus_server)
    codes = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    ids = np.arange(300, dtype=np.int64) * 3 + 2**55
    table = pa.table({"id": ids, "code": pa.array([c.tobytes() for c in codes], pa.binary(8))})
    pq.write_table(table, tmp_path / "bits.parquet", row_group_size=100)
    export = tmp_path / "export.parquet"
    steps = [
        ({"parquet": {"path": str(tmp_path / "bits.parquet")}}, {"milvus": {**server, "collection": "bits"}}),
        ({"milvus": {**server, "collection": "bits"}}, {"parquet": {"path": str(export)}}),
        ({"parquet": {"path": str(export)}}, {"milvus": {**server, "collection": "again"}}),
    ]
    for source, target in steps:
        summary = run(run_cli, manifest(tmp_path, source, target, verify="full"))
        assert summary["verified"] == "full (300 ids present, 300 rows equal, count 300)"
    client = client_for(server)
    assert next(f for f in client.describe_collection("bits")["fields"] if f["name"] == "vector")["params"]["dim"] == 64
    client.close()
    written = pq.read_table(export)
    assert written.schema.field("vector").type == pa.list_(pa.uint8())
    order = np.argsort(written.column("id").to_numpy())
    np.testing.assert_array_equal(written.column("id").to_numpy()[order], ids)
    np.testing.assert_array_equal(np.stack(written.column("vector").to_numpy(zero_copy_only=False))[order], codes)
    assert read_back(server, "again")[1] == read_back(server, "bits")[1]


def test_types_read_without_a_schema(tmp_path):
    """Binary vectors as fixed-size binary, float16 lists, structs and maps as JSON, lists as arrays."""
    rows = 50
    bits = np.random.default_rng(3).integers(0, 256, (rows, 4), dtype=np.uint8)
    table = pa.table(
        {
            "pk": pa.array(np.arange(rows, dtype=np.uint32)),
            "code": pa.array([b.tobytes() for b in bits], pa.binary(4)),
            "flag": [i % 2 == 0 for i in range(rows)],
            "score": pa.array(np.arange(rows, dtype=np.float32)),
            "name": [f"n{i}" for i in range(rows)],
            "info": [{"a": i, "b": "x"} for i in range(rows)],
            "props": pa.array([[("k", i)] for i in range(rows)], pa.map_(pa.string(), pa.int64())),
            "tags": [["t"] * (i % 3) for i in range(rows)],
        }
    )
    pq.write_table(table, tmp_path / "types.parquet", row_group_size=20)
    half = pa.table({"emb": pa.array([np.full(4, i, np.float16) for i in range(rows)], pa.list_(pa.float16()))})
    pq.write_table(half, tmp_path / "half.parquet")
    source = ParquetSource(ParquetSpec(path=str(tmp_path / "types.parquet")))
    source.open()
    try:
        assert (source.schema.vector_type, source.schema.dim) == (DataType.BINARY_VECTOR, 32)
        kinds = {c.name: (c.dtype, c.element_type) for c in source.schema.scalars}
        assert kinds == {
            "flag": (DataType.BOOL, None),
            "score": (DataType.FLOAT, None),
            "name": (DataType.VARCHAR, None),
            "info": (DataType.JSON, None),
            "props": (DataType.JSON, None),
            "tags": (DataType.ARRAY, DataType.VARCHAR),
        }
        batches = list(source.batches(15, 45, 8))
        assert [b.start for b in batches[1:]] == [b.stop for b in batches[:-1]] and all(len(b) <= 8 for b in batches)
        assert (batches[0].start, batches[-1].stop) == (15, 45)
        np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]), bits[15:45])
        batch = next(b for b in batches if b.start <= 20 < b.stop - 3)
        at = 20 - batch.start
        assert batch.ids.dtype == np.int64 and batch.ids[at] == 20
        assert json.loads(batch.scalars["info"][at]) == {"a": 20, "b": "x"}
        assert json.loads(batch.scalars["props"][at + 1]) == {"k": 21}
        assert batch.scalars["tags"][at + 3] == ["t", "t"] and batch.scalars["flag"].dtype == np.bool_
        assert type(batch.scalars["name"][at]) is str and batch.scalars["name"][at] == "n20"
    finally:
        source.close()
    source = ParquetSource(ParquetSpec(path=str(tmp_path / "half.parquet")))
    source.open()
    try:
        (batch,) = source.batches(0, rows, 100)
        assert source.schema.dim == 4 and batch.normalized().vectors.dtype == np.float32
        assert batch.normalized().vectors[7].tolist() == [7.0] * 4
    finally:
        source.close()


def bad_file(path, problem: str) -> None:
    ids, vectors = np.arange(100), np.random.default_rng(0).random((100, 4), dtype=np.float32)
    columns = {"id": pa.array(ids), "emb": vectors_column(vectors)}
    if problem == "not Parquet":
        path.write_bytes(b"id,emb\n1,2\n" * 100)
        return
    if problem == "no vector column":
        columns["emb"] = pa.array(vectors[:, 0])
    if problem == "ragged vectors":
        columns["emb"] = pa.array([list(v) for v in vectors[:90]] + [list(v[:3]) for v in vectors[90:]])
    if problem == "two vector columns":
        columns["alt"] = vectors_column(vectors)
    if problem == "null vector":
        columns["emb"] = pa.array([list(v) for v in vectors[:95]] + [None] * 5, pa.list_(pa.float32()))
    if problem.startswith("null in a vector"):
        columns["emb"] = pa.array([list(v) for v in vectors[:95]] + [[0.5, None, 0.5, 0.5]] * 5, pa.list_(pa.float32()))
    if problem == "null in an array":
        columns["tags"] = pa.array([[1, 2]] * 96 + [[1, None]] * 4)
    if problem == "null id":
        columns["id"] = pa.array([*ids[:99].tolist(), None], pa.int64())
    if problem == "duplicate ids":
        columns["id"] = pa.array(np.where(ids == 70, 7, ids))
    pq.write_table(pa.table(columns), path, row_group_size=30, write_statistics=not problem.endswith("no statistics"))


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("not Parquet", "is not a readable Parquet file"),
        ("no vector column", "no column (list of floats or fixed-size binary) holds the vectors"),
        ("ragged vectors", "the vector at row 90 of"),
        ("two vector columns", "columns emb, alt could be the vectors"),
        ("null vector", "holds null vectors"),
        ("null in a vector", "holds null vectors or values (row group 3)"),  # seen in the statistics
        ("null in a vector, no statistics", "the vector at row 95 of"),
        ("null in an array", "the array 'tags' at row 96 of"),
        ("null id", "id column 'id' of source parquet:"),
        ("duplicate ids", "has 1 duplicate id(s), e.g. 7"),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, run_cli, lite, problem, message):
    bad_file(tmp_path / "bad.parquet", problem)
    error = run(
        run_cli,
        manifest(
            tmp_path,
            {"parquet": {"path": str(tmp_path / "bad.parquet")}},
            {"milvus": {**lite, "collection": "bad"}},
            batchSize=40,
        ),
        code=2,
    )
    assert message in error and [line for line in error.splitlines() if "error" in line] == [error.splitlines()[-1]], (
        error
    )
    client = client_for(lite)
    assert not client.has_collection("bad")
    client.close()


def test_a_field_named_like_the_key_is_refused_in_one_line(tmp_path, run_cli, lite):
    ids = np.arange(10)
    table = {"id": pa.array(ids), "uid": pa.array(ids + 100), "emb": vectors_column(np.ones((10, 4), np.float32))}
    pq.write_table(pa.table(table), tmp_path / "clash.parquet")
    error = run(
        run_cli,
        manifest(
            tmp_path,
            {"parquet": {"path": str(tmp_path / "clash.parquet"), "ids": "uid"}},
            {"milvus": {**lite, "collection": "clash"}},
        ),
        code=2,
    )
    assert error.splitlines() == [error.splitlines()[-1]] and "the source's field 'id' has the name" in error, error
    client = client_for(lite)
    assert not client.has_collection("clash")
    client.close()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_killed_export_resumes_to_the_same_data(tmp_path, rng, request, where):
    """SIGKILLed midway, nothing appears under the final name (a local file, or an S3 key: the
    export is staged on disk and uploaded once whole); the resumed export holds every row once."""
    rows = 120_000
    vectors = rng.random((rows, 32), dtype=np.float32)
    ids = rng.choice(2**62, size=rows, replace=False).astype(np.int64)
    pq.write_table(
        pa.table({"id": ids, "emb": vectors_column(vectors)}), tmp_path / "in.parquet", row_group_size=25_000
    )
    s3 = request.getfixturevalue("s3") if where == "s3" else None
    local = tmp_path / "out.parquet"
    export = f"s3://{s3['bucket']}/out.parquet" if s3 else str(local)
    path = manifest(
        tmp_path,
        {"parquet": {"path": str(tmp_path / "in.parquet")}},
        {"parquet": {"path": export}},
        batchSize=500,
        verify="ids",
        **({"s3": s3["settings"]} if s3 else {}),
    )

    def exported() -> pa.Table | None:
        if s3 is None:
            return pq.read_table(local) if local.exists() else None
        found = s3["client"].list_objects_v2(Bucket=s3["bucket"]).get("Contents", [])
        if not found:
            return None
        body = s3["client"].get_object(Bucket=s3["bucket"], Key="out.parquet")["Body"].read()
        return pq.read_table(pa.BufferReader(body))

    killed_at = run_until_killed(path, tmp_path / "state", "test", 40_000)
    assert killed_at < rows and exported() is None
    summary = resume(path, tmp_path / "state")
    assert summary["verified"] == f"ids ({rows} ids present, count {rows})"
    table = exported()
    assert table is not None
    np.testing.assert_array_equal(table.column("id").to_numpy(), ids)
    np.testing.assert_array_equal(np.stack(table.column("vector").to_numpy(zero_copy_only=False)), vectors)
    assert not (tmp_path / "out.parquet.partial").exists()


def test_export_to_s3_folder_and_back(tmp_path, run_cli, lite, s3, rng):
    vectors = rng.random((2500, 8), dtype=np.float32)
    pq.write_table(
        pa.table({"id": np.arange(2500) + 7, "emb": vectors_column(vectors), "price": rng.random(2500)}),
        tmp_path / "in.parquet",
    )
    folder = f"s3://{s3['bucket']}/exports/"
    summary = run(
        run_cli,
        manifest(
            tmp_path,
            {"parquet": {"path": str(tmp_path / "in.parquet")}},
            {"parquet": {"path": folder}},
            verify="full",
            s3=s3["settings"],
        ),
    )
    assert summary["verified"] == "full (2500 ids present, 2500 rows equal, count 2500)"
    keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=s3["bucket"])["Contents"]]
    assert keys == ["exports/export.parquet"]
    run(
        run_cli,
        manifest(
            tmp_path,
            {"parquet": {"paths": [folder]}},
            {"milvus": {**lite, "collection": "back"}},
            verify="full",
            s3=s3["settings"],
        ),
    )
    found, rows = read_back(lite, "back")
    np.testing.assert_array_equal(found, np.arange(2500) + 7)
    assert rows[1007]["price"] == pytest.approx(pq.read_table(tmp_path / "in.parquet").column("price")[1000].as_py())


def test_an_export_mixed_with_a_plain_file_is_refused_in_one_line(tmp_path, run_cli, lite):
    bad_file(tmp_path / "plain.parquet", "none")  # a valid file in VectorDBBench's layout
    export = tmp_path / "export.parquet"
    copy = manifest(
        tmp_path, {"parquet": {"path": str(tmp_path / "plain.parquet")}}, {"parquet": {"path": str(export)}}
    )
    assert run_cli("run", "-f", copy, "--state", tmp_path / "state", "-q").exit_code == 0
    mixed = {"parquet": {"paths": [str(export), str(tmp_path / "plain.parquet")]}}
    error = run(run_cli, manifest(tmp_path, mixed, {"milvus": {**lite, "collection": "mixed"}}), code=2)
    assert "are not both milvusdm exports" in error.splitlines()[-1], error
    client = client_for(lite)
    assert not client.has_collection("mixed")
    client.close()


def test_a_sample_is_read_in_one_pass_over_a_large_row_group(tmp_path):
    rows, rng = 30_000, np.random.default_rng(8)
    ids = rng.choice(2**40, size=rows, replace=False).astype(np.int64)
    vectors = rng.random((rows, 4), dtype=np.float32)
    pq.write_table(pa.table({"id": ids, "emb": vectors_column(vectors)}), tmp_path / "one.parquet")  # one row group
    source = ParquetSource(ParquetSpec(path=str(tmp_path / "one.parquet")))
    source.open()
    try:
        positions = np.array([0, 9_999, 10_000, 17_777, 29_999])
        picked = list(source.rows_at(positions))  # in one pass, not a decode of the row group per row
        np.testing.assert_array_equal(np.concatenate([b.ids for b in picked]), ids[positions])
        np.testing.assert_array_equal(np.concatenate([b.normalized().vectors for b in picked]), vectors[positions])
    finally:
        source.close()
