"""Many collections per run beyond dump/restore's own tests: Milvus -> Milvus by patterns with
rename, one dumped file imported by source.hdf5, dumps of chosen databases, restore modes against
an existing collection, and a restore written as a MilvusMigration manifest."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from pymilvus import MilvusException

from tests.collections import all_rows, make_collection, make_docs, make_hashes, rows_of
from tests.conftest import client_for, manifest
from tests.integration.test_dump_restore import aliases, assert_same, cli, count, dumping, endpoint, restoring
from tests.integration.test_milvus_source import run_ok, shape_of

pytestmark = pytest.mark.server


def databases(server) -> dict[str, list[str]]:
    """Every database of a server and its collections, sorted."""
    found = {}
    for database in client_for(endpoint(server)).list_databases():
        client = client_for(endpoint(server, database))
        found[database] = sorted(client.list_collections())
        client.close()
    return {db: names for db, names in found.items() if names or db != "default"}


def small_instance(server) -> None:
    """default.hashes (binary, alias hash_alias), default.docs, db2.docs."""
    make_hashes(endpoint(server), rows=100, alias="hash_alias")
    make_docs(endpoint(server), rows=200)
    client_for(endpoint(server)).create_database("db2")
    make_docs(endpoint(server, "db2"), rows=60, seed=9)


@pytest.fixture
def small_dump(tmp_path, run_cli, source_server):
    small_instance(source_server)
    out = tmp_path / "dump"
    cli(run_cli, *dumping(source_server, out, tmp_path / "dump-state"))
    return out


def test_milvus_to_milvus_by_patterns_with_rename(tmp_path, run_cli, source_server, milvus_server):
    source = endpoint(source_server)
    make_hashes(source, rows=120, alias="hash_alias")
    make_docs(source, rows=150)
    make_docs(source, "skipped", rows=10)
    client_for(source).create_database("db2")
    make_collection(endpoint(source_server, "db2"), rows=90)
    make_docs(endpoint(source_server, "db2"), rows=50, seed=11)
    path = manifest(
        tmp_path,
        {"milvus": {**source, "collections": ["hashes", "docs", "db2.*"]}},
        {"milvus": {**endpoint(milvus_server), "rename": {"hashes": "hashes_copy", "db2.docs": "db3.docs_moved"}}},
        verify="full",
    )
    summary = run_ok(run_cli, path)

    assert summary["rows"] == 120 + 150 + 90 + 50 and len(summary["collections"]) == 4
    assert databases(milvus_server) == {
        "default": ["docs", "hashes_copy"],
        "db2": ["items"],
        "db3": ["docs_moved"],
    }
    assert_same(source, endpoint(milvus_server), "hashes", "hashes_copy")
    assert aliases(endpoint(milvus_server), "hashes_copy") == ["hash_alias"]
    assert_same(source, endpoint(milvus_server), "docs")
    assert_same(endpoint(source_server, "db2"), endpoint(milvus_server, "db2"), "items")
    assert_same(endpoint(source_server, "db2"), endpoint(milvus_server, "db3"), "docs", "docs_moved")


def test_a_dumped_collection_or_one_of_its_files_imports_by_itself(tmp_path, run_cli, source_server, milvus_server):
    source, target = endpoint(source_server), endpoint(milvus_server)
    make_collection(source, rows=120)
    out = tmp_path / "dump"
    cli(run_cli, *dumping(source_server, out, tmp_path / "state"))
    (entry,) = json.loads((out / "dump.json").read_text())["collections"]
    (record,) = [f for f in entry["files"] if f["partition"] == "archive"]
    assert record["path"] == "default/items/items_archive.h5" and record["rows"] == 40

    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(out / record["path"])}},
        {"milvus": {**target, "collection": "items_archive"}},
        verify="full",
    )
    assert run_ok(run_cli, path)["rows"] == 40
    assert rows_of(target, "items_archive") == rows_of(source, "items", "archive")
    assert shape_of(target, "items_archive")["fields"] == shape_of(source, "items")["fields"]

    whole = manifest(
        tmp_path,
        {"hdf5": {"paths": [str(out / "default/items/*.h5")]}},
        {"milvus": {**target, "collection": "items_again"}},
        verify="full",
    )
    assert run_ok(run_cli, whole)["rows"] == 120
    assert shape_of(target, "items_again") == shape_of(source, "items")
    for partition in ("_default", "archive"):
        assert rows_of(target, "items_again", partition) == rows_of(source, "items", partition)


def test_dump_of_chosen_databases(tmp_path, run_cli, source_server):
    small_instance(source_server)
    client_for(endpoint(source_server)).create_database("db3")
    make_hashes(endpoint(source_server, "db3"), rows=30)
    out = tmp_path / "dump"
    summary = cli(run_cli, *dumping(source_server, out, tmp_path / "state", "--databases", "db2"))

    assert summary["rows"] == 60
    dumped = json.loads((out / "dump.json").read_text())
    assert dumped["databases"] == ["db2"]
    assert [(c["database"], c["name"], c["rows"]) for c in dumped["collections"]] == [("db2", "docs", 60)]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "db2/docs/docs__default.h5",
        "dump.json",
    ]


def seed_target(where: dict, rows: int = 50) -> dict:
    """A ``docs`` collection of the dump's schema holding other keys (1..rows) than the dump's (0..-N)."""
    make_docs(where, rows=0)
    vectors = np.random.default_rng(2).random((rows, 8), dtype=np.float32)
    client = client_for(where)
    client.insert("docs", [{"id": i, "vector": vectors[i - 1].tolist(), "meta": {"k": i}} for i in range(1, rows + 1)])
    client.flush("docs")
    client.close()
    return all_rows(where, "docs", "id")


def restore_one(run_cli, out, server, state, collection: str, mode: str, *more: str):
    """``milvusdm restore`` of one collection of the dump ``out`` in ``mode``."""
    return run_cli(*restoring(out, server, state), "--collections", collection, "--mode", mode, "-q", *more)


def test_restore_modes_against_an_existing_collection(small_dump, tmp_path, run_cli, source_server, milvus_server):
    target, source = endpoint(milvus_server), endpoint(source_server)
    before = seed_target(target)
    dumped = all_rows(source, "docs", "id")

    def restore(mode: str):
        return restore_one(run_cli, small_dump, milvus_server, tmp_path / f"state-{mode}", "default.docs", mode)

    refused = restore("create")
    assert refused.exit_code != 0
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "'docs' already exists" in refused.stderr
    assert all_rows(target, "docs", "id") == before and count(target, "docs") == 50

    skipped = restore("skip")
    assert skipped.exit_code == 0, skipped.stderr
    assert all_rows(target, "docs", "id") == before and count(target, "docs") == 50

    appended = restore("append")
    assert appended.exit_code == 0, appended.stderr
    assert all_rows(target, "docs", "id") == before | dumped and count(target, "docs") == 50 + 200

    replaced = restore("overwrite")
    assert replaced.exit_code == 0, replaced.stderr
    assert all_rows(target, "docs", "id") == dumped and count(target, "docs") == 200
    assert databases(milvus_server) == {"default": ["docs"]}


def test_restore_as_a_manifest(small_dump, tmp_path, run_cli, source_server, milvus_server):
    target = endpoint(milvus_server)
    path = manifest(
        tmp_path,
        {"dump": {"path": str(small_dump), "collections": ["hashes", "db2.*"]}},
        {"milvus": {**target, "mode": "create", "rename": {"hashes": "hashes2", "db2.*": "db4.*"}}},
        name="restore-some",
        verify="full",
    )
    summary = run_ok(run_cli, path)

    assert summary["rows"] == 100 + 60 and all(c["verified"].startswith("full") for c in summary["collections"])
    assert databases(milvus_server) == {"default": ["hashes2"], "db4": ["docs"]}
    assert_same(endpoint(source_server), target, "hashes", "hashes2")
    assert aliases(target, "hashes2") == ["hash_alias"]
    assert_same(endpoint(source_server, "db2"), endpoint(milvus_server, "db4"), "docs")


def test_a_refused_run_reruns_with_the_mode_its_error_advises(tmp_path, run_cli, source_server, milvus_server):
    make_docs(endpoint(source_server), rows=20)
    make_docs(endpoint(milvus_server), rows=0)
    source = {"milvus": {**endpoint(source_server), "collections": ["docs"]}}
    state = tmp_path / "state"
    refused = run_cli("run", "-f", manifest(tmp_path, source, {"milvus": endpoint(milvus_server)}), "--state", state)
    assert refused.exit_code == 2 and "mode to append, overwrite or skip" in refused.stderr
    assert count(endpoint(milvus_server), "docs") == 0

    advised = manifest(tmp_path, source, {"milvus": {**endpoint(milvus_server), "mode": "overwrite"}})
    rerun = run_cli("run", "-f", advised, "-q", "--state", state)
    assert rerun.exit_code == 0, rerun.stderr
    assert all_rows(endpoint(milvus_server), "docs", "id") == all_rows(endpoint(source_server), "docs", "id")


def test_append_with_full_verification(small_dump, tmp_path, run_cli, source_server, milvus_server):
    target = endpoint(milvus_server)
    before = seed_target(target)
    result = restore_one(
        run_cli, small_dump, milvus_server, tmp_path / "state", "default.docs", "append", "--verify", "full"
    )
    assert result.exit_code == 0, result.stderr
    assert all_rows(target, "docs", "id") == before | all_rows(endpoint(source_server), "docs", "id")


def test_restoring_again_with_overwrite_keeps_the_alias(small_dump, tmp_path, run_cli, source_server, milvus_server):
    target = endpoint(milvus_server)
    make_hashes(target, rows=30, alias="hash_alias")
    try:
        result = restore_one(run_cli, small_dump, milvus_server, tmp_path / "state", "default.hashes", "overwrite")
        assert result.exit_code == 0, result.stderr
        assert_same(endpoint(source_server), target, "hashes")
        assert databases(milvus_server) == {"default": ["hashes"]}
    finally:  # a dangling alias is listed on no collection: the servers' cleanup would leave it for the next test
        with contextlib.suppress(MilvusException):
            client_for(target).drop_alias("hash_alias")


def alias_elsewhere(target: dict) -> None:
    """The dump's alias of ``hashes`` already names another collection of the target."""
    make_docs(target, "other", rows=5)
    client_for(target).create_alias("other", "hash_alias")


def test_skip_leaves_the_target_and_its_aliases_alone(small_dump, tmp_path, run_cli, milvus_server):
    target = endpoint(milvus_server)
    make_hashes(target, rows=30)
    alias_elsewhere(target)
    result = restore_one(run_cli, small_dump, milvus_server, tmp_path / "state", "default.hashes", "skip")
    assert result.exit_code == 0, result.stderr
    assert count(target, "hashes") == 30 and aliases(target, "hashes") == []
    assert aliases(target, "other") == ["hash_alias"]


def test_an_alias_held_elsewhere_is_refused_before_anything_is_written(small_dump, tmp_path, run_cli, milvus_server):
    target = endpoint(milvus_server)
    alias_elsewhere(target)
    result = restore_one(run_cli, small_dump, milvus_server, tmp_path / "state", "default.hashes", "create")
    assert result.exit_code == 2 and "hash_alias" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert databases(milvus_server) == {"default": ["other"]}
