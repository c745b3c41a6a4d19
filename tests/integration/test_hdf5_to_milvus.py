"""HDF5 -> Milvus against real targets: Milvus Lite and the embedded Milvus server."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.conftest import SERVER_TOKEN, client_for, make_h5, manifest, read_back


def run_ok(run_cli, path) -> dict:
    result = run_cli("run", "-f", path, "-q", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def assert_rows(target, collection, ids, vectors, sample=50, **kw):
    found, rows = read_back(target, collection, **kw)
    np.testing.assert_array_equal(found, np.sort(ids))
    picks = np.random.default_rng(0).choice(len(ids), size=min(sample, len(ids)), replace=False)
    for i in picks:
        np.testing.assert_allclose(rows[int(ids[i])]["vector"], vectors[i].astype(np.float32), rtol=1e-6)
    return rows


def test_milvusdm_layout_with_fields(tmp_path, run_cli, target, rng):
    vectors = rng.standard_normal((2500, 32), dtype=np.float32)
    ids = rng.choice(10**12, size=2500, replace=False).astype(np.int64) + 2**53  # beyond float64's exact range
    datasets = {
        "price": rng.random(2500),
        "stock": rng.integers(0, 100, 2500, dtype=np.int32),
        "active": rng.random(2500) > 0.5,
        "name": np.array([f"n{i}".encode() for i in range(2500)]),
    }
    file = make_h5(tmp_path / "m.h5", vectors, ids, datasets=datasets)
    fields = {name: name for name in datasets}
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file), "fields": fields}},
        {"milvus": {**target, "collection": "items"}},
        batchSize=1000,
    )
    summary = run_ok(run_cli, path)
    assert (summary["rows"], summary["verified"]) == (2500, "sample (2500 ids present, 1000 rows equal, count 2500)")
    rows = assert_rows(target, "items", ids, vectors)
    i = 1234
    row = rows[int(ids[i])]
    assert row["price"] == pytest.approx(datasets["price"][i])
    assert (row["stock"], row["active"], row["name"]) == (datasets["stock"][i], bool(datasets["active"][i]), f"n{i}")


def test_ann_benchmarks_layout_sets_metric_and_numbers_rows(tmp_path, run_cli, target, rng):
    vectors = rng.standard_normal((1200, 16), dtype=np.float32)
    file = make_h5(
        tmp_path / "glove.h5",
        vectors,
        name="train",
        distance="angular",
        datasets={"test": vectors[:10], "neighbors": np.zeros((10, 5), dtype=np.int32)},
    )
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**target, "collection": "glove"}})
    run_ok(run_cli, path)
    assert_rows(target, "glove", np.arange(1200), vectors)
    client = client_for(target)
    index = client.describe_index("glove", client.list_indexes("glove")[0])
    assert index["metric_type"] == "COSINE"


@pytest.mark.server
@pytest.mark.parametrize("distance", ["hamming", "jaccard"])
def test_ann_benchmarks_bit_datasets_become_binary_vectors(tmp_path, run_cli, milvus_server, rng, distance):
    """ann-benchmarks writes hamming and jaccard data as one bool per dimension."""
    bools = rng.random((500, 64)) > 0.5
    file = make_h5(tmp_path / "bits.h5", bools, name="train", distance=distance, point_type="bit")
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file)}},
        {"milvus": {**target, "collection": f"bits_{distance}", "index": {"type": "BIN_FLAT"}}},
        verify="full",
    )
    assert run_ok(run_cli, path)["verified"] == "full (500 ids present, 500 rows equal, count 500)"
    found, rows = read_back(target, f"bits_{distance}")
    np.testing.assert_array_equal(found, np.arange(500))
    stored = rows[7]["vector"]
    packed = np.frombuffer(b"".join(stored) if isinstance(stored, list) else stored, dtype=np.uint8)
    np.testing.assert_array_equal(np.unpackbits(packed).astype(bool), bools[7])  # the first bit is dimension 0
    client = client_for(target)
    field = next(f for f in client.describe_collection(f"bits_{distance}")["fields"] if f["name"] == "vector")
    assert field["params"]["dim"] == 64
    assert client.describe_index(f"bits_{distance}", "vector")["metric_type"] == distance.upper()


def test_ann_benchmarks_files_milvus_cannot_hold_are_refused(tmp_path, run_cli, lite):
    unknown = make_h5(tmp_path / "u.h5", np.ones((4, 8), np.float32), name="train", distance="manhattan")
    sparse = make_h5(tmp_path / "s.h5", np.arange(40, dtype=np.int32), name="train", distance="jaccard", type="sparse")
    for file, says in (
        (unknown, "names the distance 'manhattan', which milvusdm does not know"),
        (sparse, "is a sparse ann-benchmarks dataset"),
    ):
        path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "c"}})
        result = run_cli("run", "-f", path, "-q")
        assert result.exit_code == 2 and says in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "lite.db").exists()


def test_several_files_by_glob_number_rows_across_files(tmp_path, run_cli, target, rng):
    parts = [rng.random((n, 8), dtype=np.float32) for n in (700, 1, 1300)]
    for i, part in enumerate(parts):
        make_h5(tmp_path / f"part-{i}.h5", part)
    path = manifest(
        tmp_path,
        {"hdf5": {"paths": [str(tmp_path / "part-*.h5")]}},
        {"milvus": {**target, "collection": "parts"}},
        batchSize=256,
    )
    assert run_ok(run_cli, path)["rows"] == 2001
    assert_rows(target, "parts", np.arange(2001), np.concatenate(parts))


def test_chunked_gzip_float64_with_int32_ids(tmp_path, run_cli, target, rng):
    vectors = rng.standard_normal((3000, 24))  # float64 on disk
    ids = np.arange(3000, dtype=np.int32) * 3
    file = make_h5(
        tmp_path / "gz.h5", vectors, ids, dataset_options={"chunks": (128, 24), "compression": "gzip", "shuffle": True}
    )
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(file)}},
        {"milvus": {**target, "collection": "gz", "index": {"type": "FLAT"}}},
        batchSize=1000,
    )
    run_ok(run_cli, path)
    assert_rows(target, "gz", ids.astype(np.int64), vectors)


def test_partition_target(tmp_path, run_cli, target, rng):
    a, b = rng.random((300, 8), dtype=np.float32), rng.random((200, 8), dtype=np.float32)
    fa, fb = make_h5(tmp_path / "a.h5", a, np.arange(300)), make_h5(tmp_path / "b.h5", b, np.arange(200) + 1000)
    base = {**target, "collection": "parted", "mode": "append"}
    run_ok(run_cli, manifest(tmp_path, {"hdf5": {"path": str(fa)}}, {"milvus": {**base, "partition": "p2025"}}))
    summary = run_ok(
        run_cli, manifest(tmp_path, {"hdf5": {"path": str(fb)}}, {"milvus": {**base, "partition": "p2026"}})
    )
    assert summary["verified"] == "sample (200 ids present, 200 rows equal, count 200)"
    assert_rows(target, "parted", np.arange(300), a, partition="p2025")
    assert_rows(target, "parted", np.arange(200) + 1000, b, partition="p2026")
    assert set(client_for(target).list_partitions("parted")) >= {"p2025", "p2026"}


def test_every_mode(tmp_path, run_cli, target, rng):
    first, second = rng.random((400, 8), dtype=np.float32), rng.random((100, 8), dtype=np.float32)
    f1, f2 = make_h5(tmp_path / "1.h5", first, np.arange(400)), make_h5(tmp_path / "2.h5", second, np.arange(100) + 400)

    def run_mode(file, mode, code=0):
        result = run_cli(
            "run",
            "-f",
            manifest(
                tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**target, "collection": "modes", "mode": mode}}
            ),
            "-q",
            "--json",
        )
        assert result.exit_code == code, result.stderr
        return json.loads(result.stdout) if code == 0 else result.stderr

    assert run_mode(f1, "create")["rows"] == 400
    assert "already exists" in run_mode(f2, "create", code=2)
    skipped = run_mode(f2, "skip")
    assert skipped["skipped"] and skipped["rows"] == 0
    assert_rows(target, "modes", np.arange(400), first)
    assert run_mode(f2, "append")["verified"] == "sample (100 ids present, 100 rows equal, count 500)"
    assert_rows(target, "modes", np.arange(500), np.concatenate([first, second]))
    assert run_mode(f2, "overwrite")["verified"] == "sample (100 ids present, 100 rows equal, count 100)"
    assert_rows(target, "modes", np.arange(100) + 400, second)


def test_custom_field_names_and_append_schema_check(tmp_path, run_cli, lite, rng):
    vectors = rng.random((50, 4), dtype=np.float32)
    file = make_h5(tmp_path / "x.h5", vectors, datasets={"tag": np.arange(50)})
    target = {**lite, "collection": "named", "idField": "pk", "vectorField": "emb", "metric": "IP"}
    run_ok(run_cli, manifest(tmp_path, {"hdf5": {"path": str(file), "fields": {"tag": "tag"}}}, {"milvus": target}))
    described = client_for(lite).describe_collection("named")
    assert [f["name"] for f in described["fields"]] == ["pk", "emb", "tag"]
    result = run_cli(
        "run", "-f", manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**target, "mode": "append"}}), "-q"
    )
    assert result.exit_code == 2 and "requires field 'tag', which the source lacks" in result.stderr


def test_progress_lines_when_not_a_terminal(tmp_path, run_cli, lite, rng):
    file = make_h5(tmp_path / "p.h5", rng.random((100, 4), dtype=np.float32))
    result = run_cli(
        "run", "-f", manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "p"}})
    )
    assert result.exit_code == 0
    assert "copied 100/100 rows (100%)" in result.stderr
    assert (
        result.stdout.startswith("test: copied 100 rows from hdf5:")
        and "rows/s); verified: sample (100 ids present, 100 rows equal, count 100)" in result.stdout
    )


def test_shipped_sample_matches_its_generator(tmp_path):
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("make_sample", REPO / "examples/data/make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write(tmp_path / "sample.h5")
    with h5py.File(tmp_path / "sample.h5") as fresh, h5py.File(REPO / "examples/data/sample.h5") as shipped:
        for name in ("embeddings", "ids", "category", "title"):
            np.testing.assert_array_equal(fresh[name][:], shipped[name][:])
