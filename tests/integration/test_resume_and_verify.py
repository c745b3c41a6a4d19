"""Interrupted runs resume without loss or duplicates; verification catches tampering."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import faiss
import numpy as np
import pytest

from milvusdm import engine, spec, verification
from milvusdm.checkpoint import FileCheckpoints
from milvusdm.errors import VerificationError
from milvusdm.testing import QUICK_SETTINGS, EmbeddedMilvus
from milvusdm.testing.interrupt import CLI, resume, run_until_killed
from milvusdm.testing.milvus1x_writer import Milvus1xWriter
from tests.conftest import SERVER_TOKEN, client_for, make_h5, manifest, read_back


def count_all(target: dict, collection: str) -> int:
    """count(*) counts every copy of a duplicated primary key."""
    client = client_for(target)
    client.load_collection(collection)
    return client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]


def write_source(kind: str, tmp_path, ids: np.ndarray, vectors: np.ndarray) -> dict:
    """The same rows as an HDF5 file, a Faiss IVF index with those ids, or a Milvus 1.x
    directory (three segments, each with deleted rows among the live ones)."""
    if kind == "hdf5":
        return {"hdf5": {"path": str(make_h5(tmp_path / "data.h5", vectors, ids))}}
    if kind == "milvus1x":
        writer = Milvus1xWriter(tmp_path / "legacy")
        table = writer.collection("items", vectors.shape[1])
        for part_ids, part_vectors in zip(np.array_split(ids, 3), np.array_split(vectors, 3), strict=True):
            raw = len(part_ids) + 500
            deleted = np.sort(np.random.default_rng(len(part_ids)).choice(raw, 500, replace=False))
            live = np.setdiff1d(np.arange(raw), deleted)
            raw_ids, raw_vectors = np.zeros(raw, dtype=np.int64), np.zeros((raw, vectors.shape[1]), dtype=np.float32)
            raw_ids[live], raw_vectors[live] = part_ids, part_vectors
            writer.segment(table, raw_ids, raw_vectors, deleted=deleted[::-1])
        writer.write_sqlite()
        return {"milvus1x": {"path": str(writer.root), "collection": "items"}}
    quantizer = faiss.IndexFlatL2(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], 32)
    index.train(vectors[:5000])
    index.add_with_ids(vectors, ids)
    faiss.write_index(index, str(tmp_path / "data.faiss"))
    return {"faiss": {"path": str(tmp_path / "data.faiss")}}


@pytest.mark.server
@pytest.mark.parametrize(
    ("kind", "kill_after"),
    [
        ("hdf5", 0),
        ("hdf5", 17_000),
        ("hdf5", 60_000),
        ("faiss", 5_000),
        ("faiss", 33_000),
        ("milvus1x", 21_000),
    ],
)
def test_sigkill_then_resume_is_exact(tmp_path, milvus_server, kind, kill_after):
    rows = 60_000
    rng = np.random.default_rng(kill_after)
    ids = rng.choice(2**62, size=rows, replace=False).astype(np.int64)
    vectors = rng.random((rows, 16), dtype=np.float32)
    source = write_source(kind, tmp_path, ids, vectors)
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    collection = f"killed_{kind}_{kill_after}"
    path = manifest(tmp_path, source, {"milvus": {**target, "collection": collection}}, batchSize=1000, verify="full")
    killed_at = run_until_killed(path, tmp_path / "state", "test", kill_after)
    assert kill_after <= killed_at <= rows

    again = subprocess.run(
        [*CLI, "run", "-f", path, "--state", tmp_path / "state", "-q"], capture_output=True, text=True
    )
    assert again.returncode == 2 and "rerun with --resume" in again.stderr

    summary = resume(path, tmp_path / "state")
    assert summary["rows"] == rows - killed_at
    assert summary["verified"] == f"full ({rows} ids present, {rows} rows equal, count {rows})"
    assert count_all(target, collection) == rows  # no duplicates
    found, stored = read_back(target, collection)
    np.testing.assert_array_equal(found, np.sort(ids))
    for i in range(0, rows, 997):
        np.testing.assert_array_equal(stored[int(ids[i])]["vector"], vectors[i])
    assert not (tmp_path / "state" / "test.json").exists()


def test_resume_refuses_mixups(tmp_path, lite, rng, run_cli):
    file = make_h5(tmp_path / "a.h5", rng.random((100, 4), dtype=np.float32))
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "c"}})
    result = run_cli("run", "-f", path, "--state", tmp_path / "state", "--resume", "-q")
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    store = FileCheckpoints(tmp_path / "state", "test")
    migration = spec.load(path)
    from milvusdm.checkpoint import Checkpoint

    store.save(Checkpoint("someone-else", position=10, rows=10))
    result = run_cli("run", "-f", path, "--state", tmp_path / "state", "--resume", "-q")
    assert result.exit_code == 2 and "belongs to a migration with another source or target" in result.stderr
    assert migration.metadata.name == "test"


def test_server_restart_mid_run_is_survived(tmp_path, rng):
    rows = 40_000
    vectors = rng.random((rows, 16), dtype=np.float32)
    file = make_h5(tmp_path / "data.h5", vectors, np.arange(rows))
    with EmbeddedMilvus(tmp_path / "milvus", settings=QUICK_SETTINGS) as server:
        migration = spec.parse(
            {
                "apiVersion": "milvusdm.io/v1alpha1",
                "kind": "MilvusMigration",
                "metadata": {"name": "restart"},
                "spec": {
                    "source": {"hdf5": {"path": str(file)}},
                    "target": {"milvus": {"uri": server.uri, "collection": "c", "timeoutSeconds": 5}},
                    "batchSize": 1000,
                    "verify": "ids",
                },
            }
        )
        restarted = threading.Event()

        class RestartServer(engine.Observer):  # the other events: the protocol's no-ops
            def committed(self, done):
                if done >= 10_000 and not restarted.is_set():
                    restarted.set()
                    server.stop()
                    threading.Timer(2, server.start).start()

        summary = engine.run(migration, [RestartServer()])
        assert restarted.is_set()
        assert (summary.rows, summary.verified) == (rows, f"ids ({rows} ids present, count {rows})")
        assert count_all({"uri": server.uri}, "c") == rows


@pytest.fixture
def copied(tmp_path, target, rng, run_cli):
    vectors = rng.random((3000, 8), dtype=np.float32)
    file = make_h5(tmp_path / "v.h5", vectors, np.arange(3000) * 7, datasets={"tag": np.arange(3000) % 5})
    collection = f"v_{tmp_path.name[-12:].replace('-', '_')}"
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file), "fields": {"tag": "tag"}}},
        {"milvus": {**target, "collection": collection}},
    )
    assert run_cli("run", "-f", path, "-q").exit_code == 0
    result = run_cli("verify", "-f", path, "--mode", "full")
    assert result.exit_code == 0 and "full (3000 ids present, 3000 rows equal, count 3000)" in result.stdout
    return path, client_for(target), collection, vectors


def verify_fails(run_cli, path, mode):
    result = run_cli("verify", "-f", path, "--mode", mode)
    assert result.exit_code == 4, result.stdout
    return result.stderr


def test_verify_catches_a_deleted_row(copied, run_cli):
    path, client, collection, _ = copied
    client.delete(collection, ids=[7 * 1234])
    assert "holds 2999 rows, expected 3000 (1 missing)" in verify_fails(run_cli, path, "count")
    assert "1 source ids missing (e.g. 8638)" in verify_fails(run_cli, path, "ids")


@pytest.mark.parametrize("target", ["server"], indirect=True)  # Milvus Lite keeps one row per key
def test_verify_catches_a_duplicated_row(copied, run_cli):
    path, client, collection, vectors = copied
    client.insert(collection, [{"id": 7 * 42, "vector": vectors[42].tolist(), "tag": 42 % 5}])
    assert "holds 3001 rows, expected 3000 (1 extra or duplicated)" in verify_fails(run_cli, path, "ids")


def test_verify_catches_an_altered_vector_and_field(copied, run_cli):
    path, client, collection, vectors = copied
    client.upsert(collection, [{"id": 7 * 99, "vector": (vectors[99] + 0.5).tolist(), "tag": 99 % 5}])
    client.upsert(collection, [{"id": 7 * 100, "vector": vectors[100].tolist(), "tag": 4 - 100 % 5}])
    message = verify_fails(run_cli, path, "full")
    assert "2 rows differ (id 693: vector; id 700: field tag)" in message


@pytest.mark.server
def test_sigterm_stops_cleanly_and_resumes(tmp_path, milvus_server):
    rows = 40_000  # 40 batches: the signal lands while writes are in flight
    rng = np.random.default_rng(5)
    ids = rng.choice(2**62, size=rows, replace=False).astype(np.int64)
    file = make_h5(tmp_path / "data.h5", rng.random((rows, 16), dtype=np.float32), ids)
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file)}},
        {"milvus": {**target, "collection": "terminated"}},
        batchSize=1000,
        verify="ids",
    )
    state = tmp_path / "state"
    child = subprocess.Popen(
        [*CLI, "run", "-f", str(path), "--state", str(state), "-q"], stderr=subprocess.PIPE, text=True
    )
    checkpoint = state / "test.json"
    while child.poll() is None and not (checkpoint.exists() and '"position": 0' not in checkpoint.read_text()):
        time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        "milvusdm: error: interrupted; the rows written so far are checkpointed; fix: rerun with --resume to continue"
    )
    summary = resume(path, state)
    assert summary["verified"] == f"ids ({rows} ids present, count {rows})"
    assert count_all(target, "terminated") == rows


# -- tampered targets, on fresh and resumed runs ----------------------------------------------

TAMPER_ROWS, TAMPER_BATCH = 8000, 500


def tamper_source(tmp_path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(19)
    ids = rng.choice(2**62, size=TAMPER_ROWS, replace=False).astype(np.int64)
    vectors = rng.random((TAMPER_ROWS, 8), dtype=np.float32)
    tags = np.arange(TAMPER_ROWS, dtype=np.int64) % 7
    file = make_h5(tmp_path / "t.h5", vectors, ids, datasets={"tag": tags})
    return {"hdf5": {"path": str(file), "fields": {"tag": "tag"}}}, ids, vectors, tags


def tamper(client, collection: str, case: str, ids, vectors, tags) -> int:
    """Change the target's copy of row 100 (or of a row the sample compares); returns the id touched."""
    row = 100
    if case == "sampled row altered":
        row = int(verification._sample_positions((0, TAMPER_ROWS), 1000)[3])
    key = int(ids[row])
    original = {"id": key, "vector": vectors[row].tolist(), "tag": int(tags[row])}
    if case == "row deleted":
        client.delete(collection, ids=[key])
    elif case == "key inserted twice":
        client.insert(collection, [original])
    elif case == "extra row":
        key = 2**62 + 5
        client.insert(collection, [{**original, "id": key}])
    elif case == "vector altered":
        client.upsert(collection, [{**original, "vector": (vectors[row] + 1).tolist()}])
    else:  # a scalar altered, or the sampled row's scalar
        client.upsert(collection, [{**original, "tag": int(tags[row]) + 1}])
    client.flush(collection)
    return key


# (what is done to the target, the mode that must catch it, what the error says)
TAMPERING = [
    ("row deleted", "ids", "1 missing"),
    ("key inserted twice", "sample", "1 extra or duplicated"),
    ("extra row", "sample", "not in the source"),
    ("vector altered", "full", ": vector"),
    ("scalar altered", "full", ": field tag"),
    ("sampled row altered", "sample", ": field tag"),
]


@pytest.mark.server
@pytest.mark.parametrize(("case", "mode", "said"), TAMPERING)
def test_tampering_during_a_fresh_run_fails_it(tmp_path, milvus_server, case, mode, said):
    source, ids, vectors, tags = tamper_source(tmp_path)
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    collection = "tampered_" + case.replace(" ", "_")
    migration = spec.load(
        manifest(
            tmp_path, source, {"milvus": {**target, "collection": collection}}, batchSize=TAMPER_BATCH, verify=mode
        )
    )
    client = client_for(target)

    class Tamper(engine.Observer):
        touched = None

        def committed(self, done):
            if done >= TAMPER_ROWS // 2 and self.touched is None:
                self.touched = tamper(client, collection, case, ids, vectors, tags)

    observer = Tamper()
    with pytest.raises(VerificationError) as failed:
        engine.run(migration, [observer])
    assert failed.value.exit_code == 4 and said in str(failed.value), str(failed.value)
    if case != "key inserted twice":  # Milvus returns one copy of a key: the count names no id
        assert f"{observer.touched}" in str(failed.value)


@pytest.mark.server
@pytest.mark.parametrize(("case", "mode", "said"), TAMPERING)
def test_tampering_before_a_resume_fails_it(tmp_path, milvus_server, case, mode, said):
    """The digest of the rows copied before the kill lives in the checkpoint: the resumed run
    proves the whole copy, not only the rows it wrote."""
    source, ids, vectors, tags = tamper_source(tmp_path)
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    collection = "resumed_" + case.replace(" ", "_")
    path = manifest(
        tmp_path, source, {"milvus": {**target, "collection": collection}}, batchSize=TAMPER_BATCH, verify=mode
    )
    state = tmp_path / "state"
    killed_at = run_until_killed(path, state, "test", 2000)
    if killed_at >= TAMPER_ROWS:
        pytest.skip("the run finished before it could be killed")
    client = client_for(target)
    client.load_collection(collection)
    touched = tamper(client, collection, case, ids, vectors, tags)
    assert case == "extra row" or ids.tolist().index(touched) < killed_at  # a row the resumed run does not rewrite
    done = subprocess.run([*CLI, "run", "-f", path, "--state", state, "--resume", "-q"], capture_output=True, text=True)
    assert done.returncode == 4 and said in done.stderr, done.stderr


@pytest.mark.parametrize("mode", ["count", "ids", "sample", "full"])
def test_a_clean_target_passes_every_mode(copied, run_cli, mode):
    path, *_ = copied
    result = run_cli("verify", "-f", path, "--mode", mode)
    assert result.exit_code == 0 and f"verified: {mode} (" in result.stdout
