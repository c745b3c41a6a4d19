"""Bad input: one clear line, a non-zero exit, and nothing partial left in the target."""

from __future__ import annotations

import numpy as np
import pytest

from milvusdm.testing.milvus_server import free_port_block
from tests.conftest import SERVER_TOKEN, client_for, make_h5, manifest

INPUT, UNAVAILABLE = 2, 3


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("milvusdm: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def assert_fails(run_cli, path, code, *phrases, target=None, collection="items"):
    result = run_cli("run", "-f", path, "-q")
    assert result.exit_code == code, result.stderr
    line = one_error_line(result)
    for phrase in phrases:
        assert phrase in line
    assert "fix:" in line
    if target is not None:
        assert not client_for(target).has_collection(collection), "a failed run left a collection behind"


@pytest.fixture
def good(tmp_path, rng):
    return make_h5(tmp_path / "good.h5", rng.random((300, 8), dtype=np.float32), np.arange(300))


def test_missing_file(tmp_path, run_cli, lite):
    path = manifest(
        tmp_path, {"hdf5": {"path": str(tmp_path / "nope.h5")}}, {"milvus": {**lite, "collection": "items"}}
    )
    assert_fails(run_cli, path, INPUT, "nope.h5", "does not exist", target=lite)


def test_glob_matching_nothing(tmp_path, run_cli, lite):
    path = manifest(
        tmp_path, {"hdf5": {"paths": [str(tmp_path / "*.h5")]}}, {"milvus": {**lite, "collection": "items"}}
    )
    assert_fails(run_cli, path, INPUT, "no file matches", target=lite)


def test_not_hdf5(tmp_path, run_cli, lite):
    (tmp_path / "text.h5").write_text("id,vector\n1,2\n")
    path = manifest(
        tmp_path, {"hdf5": {"path": str(tmp_path / "text.h5")}}, {"milvus": {**lite, "collection": "items"}}
    )
    assert_fails(run_cli, path, INPUT, "not a readable HDF5 file", target=lite)


def test_truncated_hdf5(tmp_path, run_cli, lite, good):
    data = good.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    path = manifest(tmp_path, {"hdf5": {"path": str(tmp_path / "cut.h5")}}, {"milvus": {**lite, "collection": "items"}})
    assert_fails(run_cli, path, INPUT, "cut.h5", target=lite)


def test_corrupt_chunk_found_mid_stream_rolls_back(tmp_path, run_cli, lite, rng):
    vectors = rng.random((4000, 16), dtype=np.float32)
    file = make_h5(tmp_path / "gz.h5", vectors, dataset_options={"chunks": (1000, 16), "compression": "gzip"})
    data = bytearray(file.read_bytes())
    tail = len(data) - 20_000  # inside the last compressed chunks
    data[tail : tail + 4000] = bytes(4000)
    file.write_bytes(bytes(data))
    path = manifest(
        tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "items"}}, batchSize=1000
    )
    assert_fails(run_cli, path, INPUT, "gz.h5", "corrupt", target=lite)


def test_missing_dataset_lists_what_is_there(tmp_path, run_cli, lite, good):
    path = manifest(
        tmp_path, {"hdf5": {"path": str(good), "vectors": "emb"}}, {"milvus": {**lite, "collection": "items"}}
    )
    assert_fails(run_cli, path, INPUT, "no dataset 'emb'", "datasets: embeddings, ids", target=lite)


def test_no_default_vector_dataset(tmp_path, run_cli, lite, rng):
    file = make_h5(tmp_path / "other.h5", rng.random((10, 4)), name="features")
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "items"}})
    assert_fails(run_cli, path, INPUT, "'embeddings or train'", "features", target=lite)


def test_ids_length_mismatch(tmp_path, run_cli, lite, rng):
    file = make_h5(tmp_path / "m.h5", rng.random((10, 4)), np.arange(9))
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "items"}})
    assert_fails(run_cli, path, INPUT, "'/ids'", "(9,)", "10 rows", target=lite)


def test_vectors_not_two_dimensional(tmp_path, run_cli, lite, rng):
    file = make_h5(tmp_path / "flat.h5", rng.random(40))
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "items"}})
    assert_fails(run_cli, path, INPUT, "shape (40,)", "2-D", target=lite)


def test_float_ids_refused(tmp_path, run_cli, lite, rng):
    file = make_h5(tmp_path / "fid.h5", rng.random((10, 4)), np.arange(10, dtype=np.float64))
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "items"}})
    assert_fails(run_cli, path, INPUT, "float64, not integers", target=lite)


def test_duplicate_ids_refused_before_writing(tmp_path, run_cli, lite, rng):
    file = make_h5(tmp_path / "dup.h5", rng.random((10, 4)), np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 3]))
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "items"}})
    assert_fails(run_cli, path, INPUT, "1 duplicate id(s), e.g. 3", target=lite)


def test_nan_mid_stream_drops_the_collection_it_created(tmp_path, run_cli, lite, rng):
    vectors = rng.random((3000, 8), dtype=np.float32)
    vectors[2500, 3] = np.nan
    file = make_h5(tmp_path / "nan.h5", vectors, np.arange(3000) + 100)
    path = manifest(tmp_path, {"hdf5": {"path": str(file)}}, {"milvus": {**lite, "collection": "items"}}, batchSize=500)
    assert_fails(run_cli, path, INPUT, "row 2500 (id 2600)", "NaN or infinity", target=lite)


def test_infinity_in_append_mode_removes_only_this_runs_rows(tmp_path, run_cli, lite, rng):
    first = make_h5(tmp_path / "a.h5", rng.random((1000, 8), dtype=np.float32), np.arange(1000))
    target = {"milvus": {**lite, "collection": "items", "mode": "append"}}
    assert run_cli("run", "-f", manifest(tmp_path, {"hdf5": {"path": str(first)}}, target), "-q").exit_code == 0
    vectors = rng.random((3000, 8), dtype=np.float32)
    vectors[2999, 0] = np.inf
    second = make_h5(tmp_path / "b.h5", vectors, np.arange(3000) + 5000)
    path = manifest(tmp_path, {"hdf5": {"path": str(second)}}, target, batchSize=500)
    assert_fails(run_cli, path, INPUT, "row 2999", "NaN or infinity")
    client = client_for(lite)
    client.load_collection("items")
    rows = client.query("items", filter="", output_fields=["count(*)"], consistency_level="Strong")
    assert rows[0]["count(*)"] == 1000


def test_dimension_differs_from_existing_collection(tmp_path, run_cli, lite, rng):
    first = make_h5(tmp_path / "d8.h5", rng.random((50, 8), dtype=np.float32))
    assert (
        run_cli(
            "run",
            "-f",
            manifest(tmp_path, {"hdf5": {"path": str(first)}}, {"milvus": {**lite, "collection": "items"}}),
            "-q",
        ).exit_code
        == 0
    )
    other = make_h5(tmp_path / "d16.h5", rng.random((50, 16), dtype=np.float32))
    path = manifest(
        tmp_path, {"hdf5": {"path": str(other)}}, {"milvus": {**lite, "collection": "items", "mode": "append"}}
    )
    assert_fails(run_cli, path, INPUT, "dimension 8, the source has 16")


def test_unreachable_milvus(tmp_path, run_cli, good):
    uri = f"http://127.0.0.1:{free_port_block(size=1)}"
    path = manifest(
        tmp_path, {"hdf5": {"path": str(good)}}, {"milvus": {"uri": uri, "collection": "items", "timeoutSeconds": 3}}
    )
    assert_fails(run_cli, path, UNAVAILABLE, uri, "unreachable")


@pytest.mark.server
@pytest.mark.parametrize("token", ["root:wrong", None])
def test_bad_credentials(tmp_path, run_cli, good, milvus_server, token):
    target = {"uri": milvus_server.uri, "collection": "items"} | ({"token": token} if token else {})
    path = manifest(tmp_path, {"hdf5": {"path": str(good)}}, {"milvus": target})
    assert_fails(
        run_cli, path, INPUT, "refused the credentials", target={"uri": milvus_server.uri, "token": SERVER_TOKEN}
    )


def test_bad_manifest(tmp_path, run_cli, good, lite):
    path = manifest(tmp_path, {"hdf5": {"path": str(good), "vector": "x"}}, {"milvus": {**lite, "collection": "items"}})
    assert_fails(run_cli, path, INPUT, "spec.source.hdf5.vector: unknown field")
    result = run_cli("validate", "-f", path)
    assert result.exit_code == INPUT and "spec.source.hdf5.vector: unknown field" in one_error_line(result)


def test_validate_touches_no_data(tmp_path, run_cli, lite):
    path = manifest(
        tmp_path, {"hdf5": {"path": str(tmp_path / "later.h5")}}, {"milvus": {**lite, "collection": "items"}}
    )
    result = run_cli("validate", "-f", path)
    assert result.exit_code == 0 and "valid MilvusMigration 'test' (hdf5 -> milvus)" in result.stdout
    assert not (tmp_path / "lite.db").exists()


def test_validate_refuses_a_key_given_twice_and_notes_parallelism(tmp_path, run_cli, lite):
    path = manifest(
        tmp_path, {"hdf5": {"path": str(tmp_path / "later.h5")}}, {"milvus": {**lite, "collection": "items"}}
    )
    path.write_text(path.read_text() + "  batchSize: 10\n  batchSize: 20\n")
    result = run_cli("validate", "-f", path)
    assert result.exit_code == INPUT
    assert "found the key 'batchSize' twice (line" in one_error_line(result)
    sharded = manifest(
        tmp_path,
        {"hdf5": {"path": str(tmp_path / "later.h5")}},
        {"milvus": {**lite, "collection": "items"}},
        parallelism=3,
    )
    result = run_cli("validate", "-f", sharded)
    assert result.exit_code == 0 and "parallelism 3 applies in a cluster, a local run copies as one" in result.stdout
