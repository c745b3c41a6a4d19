"""milvusdm dump / restore: an instance (two databases, several schemas) to files and back on another server."""

from __future__ import annotations

import json

import pytest

from milvusdm.testing.interrupt import kill_when
from tests.collections import all_rows, make_collection, make_docs, make_hashes
from tests.conftest import SERVER_TOKEN, client_for
from tests.integration.test_milvus_source import shape_of

pytestmark = pytest.mark.server
KEYS = {"items": "sku", "hashes": "pk", "docs": "id"}


def endpoint(server, database: str | None = None) -> dict:
    return {"uri": server.uri, "token": SERVER_TOKEN} | ({"database": database} if database else {})


def build_instance(server) -> None:
    """default.items (varchar keys, JSON, arrays, dynamic, two partitions), default.hashes (binary, alias),
    db2.docs (int64 keys, JSON, dynamic)."""
    make_collection(endpoint(server), rows=600)
    make_hashes(endpoint(server), alias="hash_alias")
    client_for(endpoint(server)).create_database("db2")
    make_docs(endpoint(server, "db2"))


def dumping(server, out, state, *more) -> list:
    """``milvusdm dump`` of ``server`` into ``out``: its arguments, then ``more``."""
    return ["dump", "--uri", server.uri, "--token", SERVER_TOKEN, "--out", out, "--state", state, *more]


def restoring(out, server, state, *more) -> list:
    """``milvusdm restore`` of ``out`` into ``server``: its arguments, then ``more``."""
    return ["restore", "--from", out, "--uri", server.uri, "--token", SERVER_TOKEN, "--state", state, *more]


def cli(run_cli, *args) -> dict:
    result = run_cli(*args, "-q", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def aliases(where: dict, name: str) -> list[str]:
    return sorted(client_for(where).list_aliases(name, db_name=where.get("database", ""))["aliases"])


def count(where: dict, name: str) -> int:
    """count(*): every stored copy of a key counts (iterators return each key once)."""
    client = client_for(where)
    client.load_collection(name)
    (row,) = client.query(name, filter="", output_fields=["count(*)"])
    return int(row["count(*)"])


def file_records(out) -> dict:
    """Per collection and file of a dump's dump.json: its rows and digest, and that it has a SHA-256."""
    collections = json.loads((out / "dump.json").read_text())["collections"]
    return {
        (c["database"], c["name"], f["path"]): (f["partition"], f["rows"], f["digest"], len(f["sha256"]) == 64)
        for c in collections
        for f in c["files"]
    }


def assert_same(source: dict, target: dict, name: str, target_name: str | None = None) -> None:
    target_name = target_name or name
    assert shape_of(target, target_name) == shape_of(source, name)
    assert all_rows(target, target_name, KEYS[name]) == all_rows(source, name, KEYS[name])
    assert aliases(target, target_name) == aliases(source, name)


@pytest.fixture
def dumped(tmp_path, run_cli, source_server):
    build_instance(source_server)
    out = tmp_path / "dump"
    return out, cli(run_cli, *dumping(source_server, out, tmp_path / "state"))


def test_dump_then_restore_reproduces_every_collection(dumped, tmp_path, run_cli, source_server, milvus_server):
    out, summary = dumped
    assert summary["rows"] == 600 + 300 + 400 and len(summary["collections"]) == 3
    manifest = json.loads((out / "dump.json").read_text())
    assert manifest["databases"] == ["db2", "default"] and manifest["server_version"]
    listed = {(c["database"], c["name"]): c for c in manifest["collections"]}
    assert set(listed) == {("default", "items"), ("default", "hashes"), ("db2", "docs")}
    items = listed[("default", "items")]
    assert [(f["partition"], f["rows"]) for f in items["files"]] == [("_default", 400), ("archive", 200)]
    assert all((out / f["path"]).stat().st_size == f["size"] for f in items["files"])
    assert listed[("default", "hashes")]["aliases"] == ["hash_alias"]
    assert items["schema"]["indexes"][0]["index_type"] == "HNSW"

    restored = cli(run_cli, *restoring(out, milvus_server, tmp_path / "state", "--verify", "full"))
    assert restored["rows"] == 1300
    assert all(c["verified"].startswith("full") for c in restored["collections"])
    for database, name in listed:
        assert_same(endpoint(source_server, database), endpoint(milvus_server, database), name)


def test_restore_a_subset_with_rename_and_partitions(dumped, tmp_path, run_cli, source_server, milvus_server):
    out, _ = dumped
    summary = cli(
        run_cli,
        *restoring(out, milvus_server, tmp_path / "state"),
        "--collections",
        "items",
        "--collections",
        "db2.*",
        "--partitions",
        "items:archive",
        "--rename",
        "items=items_archive",
        "--rename",
        "db2.*=default.*",
        "--verify",
        "full",
    )
    assert summary["rows"] == 200 + 400
    target, source = endpoint(milvus_server), endpoint(source_server)
    assert sorted(client_for(target).list_collections()) == ["docs", "items_archive"]
    assert all_rows(target, "items_archive", "sku") == all_rows(source, "items", "sku", partition="archive")
    assert sorted(client_for(target).list_partitions("items_archive")) == ["_default", "archive"]
    assert all_rows(target, "docs", "id") == all_rows(endpoint(source_server, "db2"), "docs", "id")


def test_a_corrupted_file_is_refused_before_anything_is_written(dumped, tmp_path, run_cli, milvus_server):
    out, _ = dumped
    manifest = json.loads((out / "dump.json").read_text())
    damaged = next(f for c in manifest["collections"] if c["name"] == "hashes" for f in c["files"])
    path = out / damaged["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run_cli(*restoring(out, milvus_server, tmp_path / "state", "--collections", "hashes", "-q"))
    assert result.exit_code == 2
    assert damaged["path"] in result.stderr and "checksum" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hashes" not in client_for(endpoint(milvus_server)).list_collections()


def test_killed_dump_and_restore_resume_to_the_same_result(tmp_path, run_cli, source_server, milvus_server):
    source = endpoint(source_server)
    make_hashes(source, rows=300, alias="hash_alias")
    make_docs(source, "big", rows=20_000, dim=16)
    out, state = tmp_path / "dump", tmp_path / "state"
    position = kill_when(
        [*map(str, dumping(source_server, out, state)), "-q"],
        state / "dump.default.big.json",
        6_000,
    )
    assert position < 20_000 and not (out / "dump.json").exists()
    resumed = cli(run_cli, *dumping(source_server, out, state, "--resume"))
    assert resumed["rows"] + position >= 20_300 and (out / "dump.json").exists()
    whole = tmp_path / "whole"
    cli(run_cli, *dumping(source_server, whole, tmp_path / "whole-state"))
    assert file_records(out) == file_records(whole)
    assert sum(rows for _, rows, _, _ in file_records(whole).values()) == 20_300

    target = endpoint(milvus_server)
    position = kill_when(
        [*map(str, restoring(out, milvus_server, state)), "-q"],
        state / "restore.default.big.json",
        6_000,
    )
    assert position < 20_000
    cli(run_cli, *restoring(out, milvus_server, state, "--resume", "--verify", "full"))
    for name, key in (("big", "id"), ("hashes", "pk")):
        restored = all_rows(target, name, key)
        assert restored == all_rows(source, name, key)
        assert count(target, name) == len(restored) == count(source, name)  # count(*) counts every copy of a key
    assert aliases(target, "hashes") == ["hash_alias"]


def test_dump_to_and_restore_from_s3(tmp_path, run_cli, s3, source_server, milvus_server):
    make_docs(endpoint(source_server), rows=300)
    prefix = f"s3://{s3['bucket']}/backups/one"
    endpoint_option = ["--s3-endpoint", s3["settings"]["endpoint"]]
    cli(run_cli, *dumping(source_server, prefix, tmp_path / "state", *endpoint_option))
    keys = sorted(o["Key"] for o in s3["client"].list_objects_v2(Bucket=s3["bucket"])["Contents"])
    assert keys == ["backups/one/default/docs/docs__default.h5", "backups/one/dump.json"]
    cli(run_cli, *restoring(prefix, milvus_server, tmp_path / "state", "--verify", "full", *endpoint_option))
    assert all_rows(endpoint(milvus_server), "docs", "id") == all_rows(endpoint(source_server), "docs", "id")


def test_the_restored_rows_are_checked_against_dump_json(dumped, tmp_path, run_cli, milvus_server):
    """The copy's own digest (keys by default, whole rows with full) against the sum of dump.json's
    records of the files, before the restore commits: an edited dump.json fails with exit 4."""
    out, _ = dumped
    state = tmp_path / "state"
    restored = cli(run_cli, *restoring(out, milvus_server, state, "--collections", "items"))
    assert restored["collections"][0]["verified"].endswith("; count and keys digest as in dump.json")
    restored = cli(run_cli, *restoring(out, milvus_server, state, "--collections", "hashes", "--verify", "full"))
    assert restored["collections"][0]["verified"].endswith("; count and rows digest as in dump.json")

    path = out / "dump.json"
    manifest = json.loads(path.read_text())
    record = next(f for c in manifest["collections"] if c["name"] == "docs" for f in c["files"])
    rows, a, b = record["keys"].split(":")
    record["keys"] = f"{rows}:{int(a, 16) ^ 1:016x}:{b}"  # one bit of one lane: the file itself is intact
    path.write_text(json.dumps(manifest))
    make_docs(endpoint(milvus_server), "docs_copy", rows=50, seed=9)  # the user's own rows
    before = all_rows(endpoint(milvus_server), "docs_copy", "id")
    docs = ["--collections", "db2.docs", "--rename", "db2.docs=default.docs_copy", "-q"]
    result = run_cli(*restoring(out, milvus_server, state, *docs, "--mode", "overwrite"))
    assert result.exit_code == 4, result.stderr
    error = result.stderr.strip().splitlines()[-1]  # after the staging copy's drop, logged
    assert error.startswith("milvusdm: error: the rows restored into default.docs_copy differ from dump.json")
    assert "the target is unchanged" in error
    assert all_rows(endpoint(milvus_server), "docs_copy", "id") == before  # the overwrite never swapped in
