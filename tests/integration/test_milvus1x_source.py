"""source.milvus1x reads Milvus 1.x data directories exactly, and refuses bad ones in one line."""

from __future__ import annotations

import itertools
import json
import os
import stat

import faiss
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from milvusdm.env import META_PASSWORD
from milvusdm.sources.milvus1x import Milvus1xSource
from milvusdm.spec import Milvus1xSource as Milvus1xSpec
from milvusdm.spec import S3Settings
from milvusdm.testing.mariadb import DATABASE, PASSWORD, USER, MariaDB
from milvusdm.testing.milvus1x_writer import Milvus1xWriter
from milvusdm.testing.milvus_server import free_port_block
from tests.conftest import SERVER_TOKEN, client_for, make_h5, manifest, read_back
from tests.integration.test_bad_input import INPUT, UNAVAILABLE, assert_fails
from tests.milvus1x_data import legacy_directory


def read_all(path, collection, size=64, start=0, stop=None, **kw):
    source = Milvus1xSource(Milvus1xSpec(path=str(path), collection=collection, **kw))
    source.open()
    batches = list(source.batches(start, source.total if stop is None else stop, size))
    source.close()
    return source, batches


@pytest.mark.parametrize("collection", ["floats", "ips", "bins"])
def test_live_rows_in_order_with_deletions_dropped(tmp_path, collection):
    _, expected = legacy_directory(tmp_path)
    source, batches = read_all(tmp_path, collection, size=37)
    ids, vectors = expected.of(collection)
    assert source.total == len(ids)
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), ids)
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]), vectors)
    assert [b.start for b in batches] == sorted(b.start for b in batches)
    assert all(b.start + len(b) == n.start for b, n in itertools.pairwise(batches))


def test_schema_partitions_metric_and_binary_dimension(tmp_path):
    _, expected = legacy_directory(tmp_path)
    floats, _ = read_all(tmp_path, "floats")
    partitions = {name: len(expected.of("floats", name)[0]) for name in ("_default", "tag_a", "reused")}
    assert floats.schema.partitions == tuple(partitions.items())  # "tag-a" mapped, the dropped "reused" skipped
    assert (floats.schema.dim, floats.schema.metric, floats.schema.binary) == (16, "L2", False)
    bins, batches = read_all(tmp_path, "bins")
    assert (bins.schema.dim, bins.schema.metric, bins.schema.binary) == (64, "HAMMING", True)
    assert batches[0].vectors.shape[1] == 8
    ips, _ = read_all(tmp_path, "ips")
    assert ips.schema.metric == "IP"


def test_positions_resume_mid_segment_and_partitions_choose(tmp_path):
    _, expected = legacy_directory(tmp_path)
    ids, _ = expected.of("floats")
    for start, stop in [(0, 1), (3, 296), (290, 520), (594, 760)]:
        _, batches = read_all(tmp_path, "floats", size=50, start=start, stop=stop)
        np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), ids[start:stop])
    _, batches = read_all(tmp_path, "floats", partitions=["tag-a"])
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), expected.of("floats", "tag_a")[0])
    assert {b.partition for b in batches} == {"tag_a"}


def test_meta_left_in_wal_mode_on_a_read_only_folder(tmp_path):
    _, expected = legacy_directory(tmp_path, wal=True)
    meta = tmp_path / "db"
    assert (meta / "meta.sqlite-wal").stat().st_size > 0
    os.chmod(meta, stat.S_IRUSR | stat.S_IXUSR)
    try:
        _, batches = read_all(tmp_path, "ips")
    finally:
        os.chmod(meta, stat.S_IRWXU)
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), expected.of("ips")[0])
    assert not (meta / "meta.sqlite-shm").exists()


def segment_folder(writer, table_id, index=0):
    segment_id = [f[2] for f in writer.files if f[1] == table_id][index]
    return writer.root / "db" / "tables" / table_id / segment_id, segment_id


def run_fails(tmp_path, run_cli, source, *phrases):
    path = manifest(tmp_path, {"milvus1x": source}, {"milvus": {"uri": str(tmp_path / "lite.db"), "collection": "c"}})
    assert_fails(run_cli, path, INPUT, *phrases)
    assert not (tmp_path / "lite.db").exists()


def test_bad_directories_one_line_each(tmp_path, run_cli):
    writer, _ = legacy_directory(tmp_path / "d")
    root = str(writer.root)
    run_fails(tmp_path, run_cli, {"path": str(tmp_path), "collection": "floats"}, "not a Milvus 1.x data directory")
    (tmp_path / "empty" / "db").mkdir(parents=True)
    run_fails(
        tmp_path, run_cli, {"path": str(tmp_path / "empty"), "collection": "floats"}, "meta file", "does not exist"
    )
    run_fails(tmp_path, run_cli, {"path": root, "collection": "gone"}, "'gone' is not in", "bins, floats, ips")
    run_fails(tmp_path, run_cli, {"path": root, "collection": "floats", "partitions": ["nope"]}, "no partition 'nope'")


def test_several_collections_refuse_a_missing_name_or_tag_before_copying(tmp_path, run_cli):
    writer, _ = legacy_directory(tmp_path / "d")
    for collections, phrases in [
        (
            [{"name": "floats"}, {"name": "gone"}],  # "gone" was dropped
            ("'gone' is not in", "(live collections: bins, floats, ips)", "check source.milvus1x.collections"),
        ),
        ([{"name": "ips"}, {"name": "floats", "partitions": ["tag-a", "nope"]}], ("'floats' has no partition 'nope'",)),
    ]:
        source = {"milvus1x": {"path": str(writer.root), "collections": collections}}
        assert_fails(
            run_cli, manifest(tmp_path, source, {"milvus": {"uri": str(tmp_path / "lite.db")}}), INPUT, *phrases
        )
        assert not (tmp_path / "lite.db").exists()


def test_every_live_collection_into_one_folder_then_verified(tmp_path, run_cli):
    _, expected = legacy_directory(tmp_path / "d")
    path = manifest(tmp_path, {"milvus1x": {"path": str(tmp_path / "d")}}, {"hdf5": {"path": f"{tmp_path}/out/"}})
    result = run_cli("run", "-f", path, "-q")
    assert result.exit_code == 0, result.stderr
    names = [(c, p) for c in ("bins", "floats", "ips") for p in expected.rows[c]]  # "gone" was dropped
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == sorted(f"{c}_{p}.h5" for c, p in names)
    for collection, partition in names:
        with h5py.File(tmp_path / "out" / f"{collection}_{partition}.h5") as file:
            np.testing.assert_array_equal(file["ids"][:], expected.of(collection, partition)[0])
    result = run_cli("verify", "-f", path, "--mode", "full")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["test.bins", "test.floats", "test.ips"]
    assert all("rows equal" in line for line in lines)


@pytest.mark.server
def test_several_collections_and_every_live_one_keep_their_names(tmp_path, run_cli, milvus_server):
    writer, rng = Milvus1xWriter(tmp_path / "d"), np.random.default_rng(7)

    def segment(table: str, first: int, n: int, dim: int, deleted=()) -> np.ndarray:
        ids = 2**60 + first + np.arange(n, dtype=np.int64)
        writer.segment(table, ids, rng.standard_normal((n, dim), dtype=np.float32), deleted=deleted)
        return np.delete(ids, list(deleted))

    docs = writer.collection("docs", 8)
    rows = {"_default": segment(docs, 0, 40, 8, deleted=[17, 3])}
    rows["_2021_q4"] = segment(writer.partition(docs, "2021-q4"), 100, 30, 8)
    rows["kept"] = segment(writer.partition(docs, "kept"), 200, 20, 8)
    codes = segment(writer.collection("codes", 4, metric=2), 300, 25, 4)
    segment(writer.collection("old", 8, state=1), 400, 10, 8)  # dropped: never copied
    writer.write_sqlite()
    server = {"uri": milvus_server.uri, "token": SERVER_TOKEN}

    def run(source: dict, target: dict, name: str) -> dict:
        path = manifest(tmp_path, {"milvus1x": {"path": str(writer.root), **source}}, {"milvus": target}, name=name)
        result = run_cli("run", "-f", path, "-q", "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    def assert_ids(target: dict, collection: str, expected: np.ndarray, partition: str | None = None) -> None:
        np.testing.assert_array_equal(read_back(target, collection, partition=partition)[0], np.sort(expected))

    chosen = [{"name": "docs", "partitions": ["2021-q4", "_default"]}, {"name": "codes"}]
    summary = run({"collections": chosen}, {**server, "rename": {"docs": "docs_2021"}}, "chosen")
    assert [c["rows"] for c in summary["collections"]] == [len(rows["_default"]) + len(rows["_2021_q4"]), len(codes)]
    client = client_for(server)
    assert sorted(client.list_collections()) == ["codes", "docs_2021"]
    assert sorted(client.list_partitions("docs_2021")) == ["_2021_q4", "_default"]
    for partition in ("_default", "_2021_q4"):
        assert_ids(server, "docs_2021", rows[partition], partition)
    assert_ids(server, "codes", codes)

    summary = run({}, {**server, "mode": "skip"}, "every")  # every live one; codes is there already
    assert [(c["name"], c["rows"], c["skipped"]) for c in summary["collections"]] == [
        ("every.codes", 0, True),
        ("every.docs", sum(map(len, rows.values())), False),
    ]
    assert sorted(client.list_collections()) == ["codes", "docs", "docs_2021"]  # not the dropped "old"
    assert sorted(client.list_partitions("docs")) == ["_2021_q4", "_default", "kept"]
    for partition, ids in rows.items():
        assert_ids(server, "docs", ids, partition)


@pytest.mark.parametrize(
    "damage,phrases",
    [
        ("missing", ("is missing", ".uid")),
        ("truncated", ("truncated", ".rv")),
        ("meta rows", ("metadata says segment", "live rows")),
    ],
)
def test_damaged_segments_name_the_file(tmp_path, run_cli, damage, phrases):
    writer, _ = legacy_directory(tmp_path / "d")
    folder, segment_id = segment_folder(writer, "ips")
    if damage == "missing":
        (folder / f"{segment_id}.uid").unlink()
    elif damage == "truncated":
        with open(folder / f"{segment_id}.rv", "r+b") as file:
            file.truncate(500)
    else:  # the .rv holds another number of rows than the metadata's row_count
        writer.files = [(*f[:7], f[7] + 1, *f[8:]) if f[1] == "ips" else f for f in writer.files]
        (writer.root / "db" / "meta.sqlite").unlink()
        writer.write_sqlite()
    run_fails(tmp_path, run_cli, {"path": str(writer.root), "collection": "ips"}, *phrases)


@pytest.mark.parametrize(
    "ids,phrase",
    [
        (np.array([5, 9, 5], dtype=np.int64), "duplicate id"),
        (np.array([1, 2**63 - 1, 3], dtype=np.int64), "2**63-1"),
    ],
)
def test_duplicate_and_sentinel_ids_are_refused_up_front(tmp_path, run_cli, ids, phrase):
    writer = Milvus1xWriter(tmp_path / "d")
    writer.segment(writer.collection("c", 4), ids, np.ones((3, 4), dtype=np.float32))
    writer.write_sqlite()
    run_fails(tmp_path, run_cli, {"path": str(writer.root), "collection": "c"}, phrase)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    """A private MariaDB on a loopback port holding the fixture directory's meta rows."""
    with MariaDB(tmp_path_factory.mktemp("mariadb")) as server:
        root = tmp_path_factory.mktemp("legacy")
        writer, expected = legacy_directory(root, meta=False)
        connection = server.connect()
        writer.write_mysql(connection)
        connection.close()
        yield server, root, expected


def mysql_meta(server, **changes) -> dict:
    return {
        "mysql": {
            "host": "127.0.0.1",
            "port": server.port,
            "user": USER,
            "passwordSecretRef": {"name": "meta", "key": "password"},
            "database": DATABASE,
        }
        | changes
    }


def test_mysql_meta_reads_the_same_rows(mariadb, monkeypatch):
    server, root, expected = mariadb
    monkeypatch.setenv(META_PASSWORD, PASSWORD)
    for collection in ("floats", "bins"):
        spec = Milvus1xSpec.model_validate({"path": str(root), "collection": collection, "meta": mysql_meta(server)})
        source = Milvus1xSource(spec)
        source.open()
        ids, vectors = expected.of(collection)
        batches = list(source.batches(0, source.total, 100))
        np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), ids)
        np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]), vectors)


def test_mysql_meta_errors_are_one_line(mariadb, tmp_path, run_cli, monkeypatch):
    server, root, _ = mariadb
    monkeypatch.delenv(META_PASSWORD, raising=False)
    run_fails(
        tmp_path,
        run_cli,
        {"path": str(root), "collection": "ips", "meta": mysql_meta(server)},
        META_PASSWORD,
        "is not set",
    )
    wrong = mysql_meta(server, password="wrong", passwordSecretRef=None)
    wrong["mysql"].pop("passwordSecretRef")
    run_fails(tmp_path, run_cli, {"path": str(root), "collection": "ips", "meta": wrong}, "refused", "Access denied")
    closed = mysql_meta(server, port=free_port_block(size=1), password="x")
    closed["mysql"].pop("passwordSecretRef")
    path = manifest(
        tmp_path,
        {"milvus1x": {"path": str(root), "collection": "ips", "meta": closed}},
        {"milvus": {"uri": str(tmp_path / "lite.db"), "collection": "c"}},
    )
    assert_fails(run_cli, path, UNAVAILABLE, "cannot reach the meta database")


def test_keep_first_drops_later_copies_as_if_deleted(tmp_path):
    writer = Milvus1xWriter(tmp_path)
    table = writer.collection("c", 4)
    vectors = np.arange(40, dtype=np.float32).reshape(10, 4)
    writer.segment(table, np.array([1, 2, 3, 2, 5]), vectors[:5], deleted=[0])  # the deleted 1 is no copy
    writer.segment(writer.partition(table, "p"), np.array([5, 1, 6, 3, 7]), vectors[5:])
    writer.write_sqlite()
    source, batches = read_all(tmp_path, "c", size=2, duplicates="keepFirst")
    assert source.total == 6 and source.schema.partitions == (("_default", 3), ("p", 3))
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), [2, 3, 5, 1, 6, 7])
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]), vectors[[1, 2, 4, 6, 7, 9]])
    assert [b.partition for b in batches] == ["_default", "_default", "p", "p"]


@pytest.mark.parametrize("kind", ["hdf5", "parquet", "faiss"])
def test_every_source_refuses_the_key_milvus_never_returns(tmp_path, run_cli, kind):
    ids, vectors = np.array([1, 2**63 - 1, 3], dtype=np.int64), np.ones((3, 4), dtype=np.float32)
    if kind == "hdf5":
        source = {"hdf5": {"path": str(make_h5(tmp_path / "x.h5", vectors, ids))}}
    elif kind == "parquet":
        pq.write_table(pa.table({"id": ids, "vector": vectors.tolist()}), tmp_path / "x.parquet")
        source = {"parquet": {"path": str(tmp_path / "x.parquet")}}
    else:
        index = faiss.IndexIDMap(faiss.IndexFlatL2(4))
        index.add_with_ids(vectors, ids)
        faiss.write_index(index, str(tmp_path / "x.index"))
        source = {"faiss": {"path": str(tmp_path / "x.index")}}
    path = manifest(tmp_path, source, {"milvus": {"uri": str(tmp_path / "lite.db"), "collection": "c"}})
    assert_fails(run_cli, path, INPUT, "2**63-1", "never returns")
    assert not (tmp_path / "lite.db").exists()


def test_a_directory_copied_to_s3_reads_the_same(tmp_path, s3):
    _, expected = legacy_directory(tmp_path / "local")
    for file in (tmp_path / "local").rglob("*"):
        if file.is_file():
            s3["client"].upload_file(str(file), s3["bucket"], f"old/{file.relative_to(tmp_path / 'local')}")
    spec = Milvus1xSpec(path=f"s3://{s3['bucket']}/old", collection="floats")
    source = Milvus1xSource(spec, S3Settings.model_validate(s3["settings"]))
    source.open()
    batches = list(source.batches(0, source.total, 128))
    ids, vectors = expected.of("floats")
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), ids)
    np.testing.assert_array_equal(np.concatenate([b.vectors for b in batches]), vectors)


def test_keys_alone_match_the_batches(tmp_path):
    legacy_directory(tmp_path)
    source, batches = read_all(tmp_path, "floats", size=70, start=5, stop=700)
    source.open()
    keys = np.concatenate(list(source.keys(5, 700, 70)))
    np.testing.assert_array_equal(keys, np.concatenate([b.ids for b in batches]))
