"""target.hdf5: exports in MilvusDM's layout that source.hdf5 reads back, resumable byte for byte."""

from __future__ import annotations

import json

import faiss
import h5py
import numpy as np
import pytest

from milvusdm.testing.interrupt import resume, run_until_killed
from tests.conftest import make_h5, manifest, read_back


def run_ok(run_cli, path) -> dict:
    result = run_cli("run", "-f", path, "-q", "--json", "--state", path.parent / "state")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_faiss_index_exported_and_imported_again(tmp_path, run_cli, lite, rng):
    vectors = rng.random((2000, 24), dtype=np.float32)
    ids = rng.choice(2**50, size=2000, replace=False).astype(np.int64)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(24))
    index.add_with_ids(vectors, ids)
    faiss.write_index(index, str(tmp_path / "ip.faiss"))
    export = tmp_path / "out" / "export.h5"
    summary = run_ok(
        run_cli,
        manifest(
            tmp_path, {"faiss": {"path": str(tmp_path / "ip.faiss")}}, {"hdf5": {"path": str(export)}}, verify="full"
        ),
    )
    assert summary["verified"] == "full (2000 ids present, 2000 rows equal, count 2000)"
    with h5py.File(export) as f:
        np.testing.assert_array_equal(f["ids"][:], ids)
        np.testing.assert_array_equal(f["embeddings"][:], vectors)
        assert f.attrs["distance"] == "dot" and json.loads(f.attrs["milvusdm_schema"])["dim"] == 24
    assert not export.with_name("export.h5.partial").exists()

    run_ok(run_cli, manifest(tmp_path, {"hdf5": {"path": str(export)}}, {"milvus": {**lite, "collection": "again"}}))
    found, rows = read_back(lite, "again")
    np.testing.assert_array_equal(found, np.sort(ids))
    np.testing.assert_array_equal(rows[int(ids[7])]["vector"], vectors[7])


def test_fields_survive_an_hdf5_round_trip(tmp_path, run_cli, rng):
    vectors = rng.random((500, 8), dtype=np.float32)
    datasets = {
        "price": rng.random(500),
        "qty": rng.integers(0, 9, 500, dtype=np.int32),
        "name": np.array([f"item {i}".encode() for i in range(500)]),
    }
    source = make_h5(tmp_path / "in.h5", vectors, np.arange(500) + 10, datasets=datasets)
    export = tmp_path / "out.h5"
    fields = {name: name for name in datasets}
    run_ok(
        run_cli,
        manifest(
            tmp_path, {"hdf5": {"path": str(source), "fields": fields}}, {"hdf5": {"path": str(export)}}, verify="full"
        ),
    )
    with h5py.File(export) as f:
        np.testing.assert_array_equal(f["price"][:], datasets["price"])
        np.testing.assert_array_equal(f["qty"][:], datasets["qty"])
        assert list(f["name"].asstr()[:3]) == ["item 0", "item 1", "item 2"]


def test_existing_file_needs_overwrite(tmp_path, run_cli, rng):
    source = make_h5(tmp_path / "in.h5", rng.random((50, 4), dtype=np.float32))
    export = tmp_path / "out.h5"
    export.write_bytes(b"keep me")
    result = run_cli(
        "run", "-f", manifest(tmp_path, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": str(export)}}), "-q"
    )
    assert result.exit_code == 2 and "already exists" in result.stderr and export.read_bytes() == b"keep me"
    run_ok(
        run_cli, manifest(tmp_path, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": str(export), "overwrite": True}})
    )
    with h5py.File(export) as f:
        assert f["embeddings"].shape == (50, 4)


def test_bad_data_mid_export_leaves_no_file(tmp_path, run_cli, rng):
    vectors = rng.random((3000, 4), dtype=np.float32)
    vectors[2500, 1] = np.nan
    source = make_h5(tmp_path / "in.h5", vectors)
    export = tmp_path / "out.h5"
    result = run_cli(
        "run",
        "-f",
        manifest(tmp_path, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": str(export)}}, batchSize=500),
        "-q",
    )
    assert result.exit_code == 2 and "NaN or infinity" in result.stderr
    assert not export.exists() and not export.with_name("out.h5.partial").exists()


def test_killed_export_resumes_to_the_same_data(tmp_path, rng):
    rows = 200_000
    vectors = rng.random((rows, 64), dtype=np.float32)
    ids = rng.choice(2**62, size=rows, replace=False).astype(np.int64)
    source = make_h5(tmp_path / "in.h5", vectors, ids)
    export = tmp_path / "export.h5"
    path = manifest(
        tmp_path, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": str(export)}}, batchSize=500, verify="ids"
    )
    killed_at = run_until_killed(path, tmp_path / "state", "test", 60_000)
    assert killed_at < rows and not export.exists()
    summary = resume(path, tmp_path / "state")
    assert summary["verified"] == f"ids ({rows} ids present, count {rows})"
    with h5py.File(export) as f:
        np.testing.assert_array_equal(f["ids"][:], ids)
        np.testing.assert_array_equal(f["embeddings"][:], vectors)


def test_parallel_export_is_refused():
    from milvusdm import spec
    from milvusdm.errors import InputError

    with pytest.raises(InputError, match="written by one process"):
        spec.parse(
            {
                "apiVersion": "milvusdm.io/v1alpha1",
                "kind": "MilvusMigration",
                "metadata": {"name": "x"},
                "spec": {"source": {"faiss": {"path": "a"}}, "target": {"hdf5": {"path": "b.h5"}}, "parallelism": 2},
            }
        )
