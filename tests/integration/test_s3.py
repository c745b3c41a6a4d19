"""s3:// paths against a real S3 endpoint (moto server, signatures checked): sources streamed,
exports uploaded, and every failure one clear line with nothing left behind."""

from __future__ import annotations

import io
import json

import faiss
import h5py
import numpy as np
import pytest

from milvusdm import storage
from tests.collections import make_collection, rows_of
from tests.conftest import client_for, make_h5, manifest, read_back


def put(s3: dict, key: str, path) -> str:
    s3["client"].upload_file(str(path), s3["bucket"], key)
    return f"s3://{s3['bucket']}/{key}"


def run(run_cli, path, code=0):
    result = run_cli("run", "-f", path, "-q", "--json", "--state", path.parent / "state")
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout) if code == 0 else result.stderr.strip()


def test_hdf5_files_streamed_by_key_and_glob(tmp_path, run_cli, lite, s3, rng):
    vectors = rng.random((6000, 32), dtype=np.float32)
    price = rng.random(6000)
    for part, rows in enumerate((slice(0, 4000), slice(4000, 6000))):
        ids = np.arange(6000)[rows] * 3
        make_h5(
            tmp_path / f"{part}.h5",
            vectors[rows],
            ids,
            datasets={"price": price[rows]},
            dataset_options={"chunks": (500, 32), "compression": "gzip"},
        )
        put(s3, f"parts/{part}.h5", tmp_path / f"{part}.h5")
    settings = {**s3["settings"], "blockSizeMb": 1}  # many blocks: reads cross block edges
    source = {
        "hdf5": {
            "paths": [f"s3://{s3['bucket']}/parts/0.h5", f"s3://{s3['bucket']}/parts/[1-9].h5"],
            "fields": {"price": "price"},
        }
    }
    summary = run(
        run_cli, manifest(tmp_path, source, {"milvus": {**lite, "collection": "items"}}, verify="full", s3=settings)
    )
    assert summary["verified"] == "full (6000 ids present, 6000 rows equal, count 6000)"
    found, rows = read_back(lite, "items")
    np.testing.assert_array_equal(found, np.arange(6000) * 3)
    assert rows[4500 * 3]["price"] == pytest.approx(price[4500])


def test_prefix_lists_every_object_under_it(tmp_path, run_cli, lite, s3, rng):
    for part in range(3):
        put(
            s3,
            f"many/{part}.h5",
            make_h5(tmp_path / f"{part}.h5", rng.random((10, 4), dtype=np.float32), np.arange(10) + 10 * part),
        )
    summary = run(
        run_cli,
        manifest(
            tmp_path,
            {"hdf5": {"paths": [f"s3://{s3['bucket']}/many/"]}},
            {"milvus": {**lite, "collection": "items"}},
            s3=s3["settings"],
        ),
    )
    assert summary["rows"] == 30


def test_faiss_index_from_s3(tmp_path, run_cli, lite, s3, rng):
    vectors = rng.random((3000, 16), dtype=np.float32)
    ids = rng.choice(2**40, 3000, replace=False).astype(np.int64)
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(16), 16, 8)
    index.train(vectors)
    index.add_with_ids(vectors, ids)
    faiss.write_index(index, str(tmp_path / "ivf.faiss"))
    url = put(s3, "indexes/ivf.faiss", tmp_path / "ivf.faiss")
    summary = run(
        run_cli,
        manifest(
            tmp_path,
            {"faiss": {"path": url}},
            {"milvus": {**lite, "collection": "items"}},
            verify="full",
            s3=s3["settings"],
        ),
    )
    assert summary["verified"] == "full (3000 ids present, 3000 rows equal, count 3000)"
    np.testing.assert_array_equal(read_back(lite, "items")[0], np.sort(ids))


def test_export_to_s3_and_back(tmp_path, run_cli, lite, s3, rng):
    vectors = rng.random((2500, 8), dtype=np.float32)
    source = make_h5(tmp_path / "in.h5", vectors, np.arange(2500) + 7)
    url = f"s3://{s3['bucket']}/exports/items.h5"
    summary = run(
        run_cli,
        manifest(tmp_path, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": url}}, verify="full", s3=s3["settings"]),
    )
    assert summary["verified"] == "full (2500 ids present, 2500 rows equal, count 2500)"
    body = s3["client"].get_object(Bucket=s3["bucket"], Key="exports/items.h5")["Body"].read()
    with h5py.File(io.BytesIO(body)) as f:
        np.testing.assert_array_equal(f["embeddings"][:], vectors)
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"])["Contents"]
    assert [o["Key"] for o in listed] == ["exports/items.h5"]  # nothing partial beside it

    stderr = run(
        run_cli, manifest(tmp_path, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": url}}, s3=s3["settings"]), 2
    )
    assert f"{url} already exists" in stderr

    run(
        run_cli,
        manifest(tmp_path, {"hdf5": {"path": url}}, {"milvus": {**lite, "collection": "back"}}, s3=s3["settings"]),
    )
    np.testing.assert_array_equal(read_back(lite, "back")[0], np.arange(2500) + 7)


def test_collection_exported_to_an_s3_folder_in_parts(tmp_path, run_cli, lite, s3, monkeypatch):
    monkeypatch.setattr(storage, "PART_BYTES", 5 << 20)
    make_collection(lite, rows=6000, dim=512)  # ~8 MB per file: two parts each
    prefix = f"s3://{s3['bucket']}/backup/"
    run(
        run_cli,
        manifest(tmp_path, {"milvus": {**lite, "collection": "items"}}, {"hdf5": {"path": prefix}}, s3=s3["settings"]),
    )
    keys = sorted(o["Key"] for o in s3["client"].list_objects_v2(Bucket=s3["bucket"])["Contents"])
    assert keys == ["backup/items__default.h5", "backup/items_archive.h5"]
    run(
        run_cli,
        manifest(
            tmp_path,
            {"hdf5": {"paths": [prefix]}},
            {"milvus": {**lite, "collection": "back"}},
            verify="full",
            s3=s3["settings"],
        ),
    )
    assert rows_of(lite, "back") == rows_of(lite, "items")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("wrong-secret", "refused to let us read"),
        ("no-such-key", "does not exist at http"),
        ("no-such-bucket", "bucket 'nowhere' does not exist"),
        ("not-hdf5", "is not a readable HDF5 file"),
        ("wrong-endpoint", "cannot reach S3 at http://127.0.0.1:9"),
    ],
)
def test_bad_s3_input(tmp_path, run_cli, lite, s3, rng, monkeypatch, change, message):
    good = make_h5(tmp_path / "good.h5", rng.random((100, 4), dtype=np.float32))
    url = put(s3, "good.h5", good)
    (tmp_path / "junk").write_bytes(b"not an hdf5 file" * 100)
    junk = put(s3, "junk.h5", tmp_path / "junk")
    settings = dict(s3["settings"])
    path = {"no-such-key": url + ".missing", "no-such-bucket": "s3://nowhere/good.h5", "not-hdf5": junk}.get(
        change, url
    )
    if change == "wrong-secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    if change == "wrong-endpoint":
        settings["endpoint"] = "http://127.0.0.1:9"
    stderr = run(
        run_cli,
        manifest(tmp_path, {"hdf5": {"path": path}}, {"milvus": {**lite, "collection": "items"}}, s3=settings),
        3 if change == "wrong-endpoint" else 2,
    )
    assert message in stderr and len(stderr.splitlines()) == 1
    assert not client_for(lite).has_collection("items")


def test_export_with_wrong_credentials_leaves_nothing(tmp_path, run_cli, lite, s3, rng, monkeypatch):
    source = make_h5(tmp_path / "in.h5", rng.random((100, 4), dtype=np.float32))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    url = f"s3://{s3['bucket']}/out.h5"
    stderr = run(
        run_cli, manifest(tmp_path, {"hdf5": {"path": str(source)}}, {"hdf5": {"path": url}}, s3=s3["settings"]), 2
    )
    assert "refused" in stderr
    assert "Contents" not in s3["client"].list_objects_v2(Bucket=s3["bucket"])
