"""A run never destroys what existed before it (issue #14, cases 1-3): a copy onto itself is refused,
append never duplicates or deletes the target's own rows, and overwrite is blue/green."""

from __future__ import annotations

import json

import numpy as np
import pytest

from milvusdm.sinks.milvus import RETIRED, STAGING
from milvusdm.testing.interrupt import resume, run_until_killed
from tests.conftest import SERVER_TOKEN, client_for, make_h5, manifest, read_back

INPUT = 2


def rows_in(target: dict, collection: str) -> dict:
    return read_back(target, collection)[1]


def load_rows(tmp_path, run_cli, target: dict, ids: np.ndarray, vectors: np.ndarray, collection: str = "items") -> None:
    """A collection the user owns, made by an ordinary run."""
    file = make_h5(tmp_path / f"own-{len(list(tmp_path.glob('own-*')))}.h5", vectors, ids)
    result = run_cli(
        "run",
        "-f",
        manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**target, "collection": collection}}),
        "-q",
    )
    assert result.exit_code == 0, result.stderr


def collections(target: dict) -> list[str]:
    client = client_for(target)
    try:
        return sorted(client.list_collections())
    finally:
        client.close()


# -- 1. source and target the same collection ------------------------------------------------------


@pytest.mark.server
def test_same_collection_spelled_two_ways_is_refused(tmp_path, run_cli, milvus_server, rng):
    server = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    load_rows(tmp_path, run_cli, server, np.arange(200), rng.random((200, 8), dtype=np.float32))
    other_spelling = {**server, "uri": milvus_server.uri.replace("127.0.0.1", "localhost")}
    assert other_spelling["uri"] != server["uri"]
    path = manifest(
        tmp_path,
        {"milvus": {**server, "collection": "items"}},
        {"milvus": {**other_spelling, "collection": "items", "mode": "overwrite"}},
    )
    for command in ("validate", "run"):
        result = run_cli(command, "-f", path)
        assert result.exit_code == INPUT and "same collection 'items'" in result.stderr, result.stderr
    assert len(rows_in(server, "items")) == 200


def test_same_lite_collection_through_another_path_is_refused(tmp_path, run_cli, lite, rng):
    load_rows(tmp_path, run_cli, lite, np.arange(100), rng.random((100, 8), dtype=np.float32))
    (tmp_path / "sub").mkdir()
    detour = {"uri": str(tmp_path / "sub" / ".." / "lite.db")}
    path = manifest(
        tmp_path,
        {"milvus": {**lite, "collection": "items"}},
        {"milvus": {**detour, "collection": "items", "mode": "overwrite"}},
    )
    result = run_cli("validate", "-f", path)
    assert result.exit_code == INPUT and "same collection" in result.stderr
    assert len(rows_in(lite, "items")) == 100


# -- 2. append: conflicts found before writing, a rollback removes only this run's rows ----------------


@pytest.fixture
def appended(tmp_path, run_cli, target, rng):
    """1000 rows the user owns (keys 0..999), and a source of 1000 rows whose keys 500..999 overlap."""
    load_rows(tmp_path, run_cli, target, np.arange(1000), np.zeros((1000, 8), dtype=np.float32))
    source = make_h5(tmp_path / "more.h5", rng.random((1000, 8), dtype=np.float32) + 1, np.arange(500, 1500))

    def append(on_conflict: str | None = None, file=source, **spec):
        settings = {**target, "collection": "items", "mode": "append"}
        settings |= {"onConflict": on_conflict} if on_conflict else {}
        path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": settings}, **spec)
        return run_cli("run", "-f", path, "--state", tmp_path / "state", "-q", "--json")

    return append


@pytest.mark.server
def test_append_refuses_keys_the_target_holds(appended, target):
    result = appended()
    assert result.exit_code == INPUT
    assert "500 of the source's keys are already in" in result.stderr and "onConflict" in result.stderr
    rows = rows_in(target, "items")
    assert sorted(rows) == list(range(1000)) and all(not any(r["vector"]) for r in rows.values())


@pytest.mark.server
def test_append_skip_keeps_the_targets_rows(appended, target):
    result = appended("skip")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["verified"].startswith("ids (1000 ids present, count 1500)")
    rows = rows_in(target, "items")
    assert sorted(rows) == list(range(1500))
    assert all(not any(rows[k]["vector"]) for k in range(1000)) and all(
        min(rows[k]["vector"]) >= 1 for k in range(1000, 1500)
    )


@pytest.mark.server
def test_append_upsert_replaces_the_targets_rows(appended, target):
    assert appended("upsert").exit_code == 0
    rows = rows_in(target, "items")
    assert sorted(rows) == list(range(1500))
    assert all(not any(rows[k]["vector"]) for k in range(500)) and all(
        min(rows[k]["vector"]) >= 1 for k in range(500, 1500)
    )


@pytest.mark.server
def test_failed_append_removes_only_rows_it_added(tmp_path, appended, target, rng):
    vectors = rng.random((1000, 8), dtype=np.float32) + 1
    vectors[999, 0] = np.nan  # found after every other batch is written
    bad = make_h5(tmp_path / "bad.h5", vectors, np.arange(500, 1500))
    result = appended("skip", file=bad, batchSize=100)
    assert result.exit_code == INPUT and "NaN" in result.stderr
    rows = rows_in(target, "items")
    assert sorted(rows) == list(range(1000)) and all(not any(r["vector"]) for r in rows.values())
    assert not (tmp_path / "state" / "test.json").exists()


# -- 3. overwrite is blue/green ------------------------------------------------------------------


@pytest.fixture
def owned(tmp_path, run_cli, target):
    """300 rows the user owns in 'items', indexed with HNSW; returns how to overwrite them."""
    client = client_for(target)
    client.create_collection("items", dimension=8, metric_type="COSINE", index_type="HNSW", id_type="int")
    client.insert("items", [{"id": i, "vector": [float(i % 7) + 1] * 8} for i in range(300)])
    client.flush("items")
    index = client.describe_index("items", client.list_indexes("items")[0])
    client.close()

    def overwrite(file, **settings):
        target_spec = {"milvus": {**target, "collection": "items", "mode": "overwrite", **settings}}
        path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, target_spec, batchSize=500)
        return path, run_cli("run", "-f", path, "--state", tmp_path / "state", "-q", "--json")

    overwrite.index = index
    return overwrite


def assert_untouched(target: dict, owned) -> None:
    rows = rows_in(target, "items")
    assert sorted(rows) == list(range(300)) and rows[5]["vector"] == [6.0] * 8
    client = client_for(target)
    assert client.describe_index("items", client.list_indexes("items")[0]) == owned.index
    client.close()
    assert collections(target) == ["items"]


@pytest.mark.server
def test_failed_overwrite_leaves_the_old_collection(tmp_path, owned, target, rng):
    vectors = rng.random((2000, 8), dtype=np.float32)
    vectors[1800, 1] = np.nan
    _, result = owned(make_h5(tmp_path / "nan.h5", vectors))
    assert result.exit_code == INPUT and "NaN" in result.stderr
    assert_untouched(target, owned)


@pytest.mark.server
def test_overwrite_with_an_index_the_server_refuses_leaves_the_old_collection(tmp_path, owned, target, rng):
    _, result = owned(make_h5(tmp_path / "ok.h5", rng.random((100, 8), dtype=np.float32)), index={"type": "NOPE"})
    assert result.exit_code == INPUT, result.stderr
    assert_untouched(target, owned)


@pytest.mark.server
def test_overwrite_swaps_the_verified_copy_in(tmp_path, owned, target, rng):
    vectors = rng.random((1000, 8), dtype=np.float32)
    _, result = owned(make_h5(tmp_path / "new.h5", vectors, np.arange(1000) + 10_000))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"].endswith("count 1000)")
    assert collections(target) == ["items"]
    found, rows = read_back(target, "items")
    np.testing.assert_array_equal(found, np.arange(1000) + 10_000)
    np.testing.assert_allclose(rows[10_007]["vector"], vectors[7], rtol=1e-6)


@pytest.mark.server
@pytest.mark.parametrize("target", ["server"], indirect=True)
def test_interrupted_overwrite_resumes_into_its_copy(tmp_path, owned, target):
    server = target
    rows = 40_000
    vectors = np.random.default_rng(3).random((rows, 8), dtype=np.float32)
    file = make_h5(tmp_path / "big.h5", vectors, np.arange(rows) + 10_000)
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file)}},
        {"milvus": {**server, "collection": "items", "mode": "overwrite"}},
        batchSize=1000,
        verify="ids",
    )
    killed_at = run_until_killed(path, tmp_path / "state", "test", 5_000)
    assert killed_at < rows
    assert collections(server) == ["items", "items" + STAGING]
    assert sorted(rows_in(server, "items")) == list(range(300))  # the old rows, untouched so far
    summary = resume(path, tmp_path / "state")
    assert summary["verified"].startswith(f"ids ({rows} ids present")
    assert collections(server) == ["items"] and "items" + RETIRED not in collections(server)
    found, _ = read_back(server, "items")
    np.testing.assert_array_equal(found, np.arange(rows) + 10_000)
