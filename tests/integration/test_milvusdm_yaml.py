"""MilvusDM's YAML files run unchanged (``milvusdm --yaml``), convert to valid manifests, and
binary HDF5 vectors in MilvusDM's layouts round-trip."""

from __future__ import annotations

import json

import faiss
import h5py
import numpy as np
import pytest
import yaml

from milvusdm import spec
from tests.conftest import REPO, SERVER_TOKEN, client_for, make_h5, manifest, read_back
from tests.crd_validation import validate
from tests.integration.test_bad_input import INPUT, one_error_line
from tests.milvus1x_data import legacy_directory


def write_yaml(tmp_path, kind: str, body: dict):
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump({kind: body}))
    return path


def destination(server, **more) -> dict:
    host, port = server.uri.removeprefix("http://").split(":")
    return {"dest_host": host, "dest_port": int(port), **more}


def run_yaml(run_cli, tmp_path, path):
    """MilvusDM's own command line; its YAML has no credentials, the environment gives them."""
    env = {"MILVUSDM_TARGET_TOKEN": SERVER_TOKEN, "MILVUSDM_STATE_DIR": str(tmp_path / "state")}
    result = run_cli("--yaml", path, env=env)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip().splitlines()


def bits(value) -> np.ndarray:
    return np.frombuffer(b"".join(value) if isinstance(value, list) else value, dtype=np.uint8)


def assert_copied(target, collection, ids, vectors, partition=None):
    found, rows = read_back(target, collection, partition=partition)
    np.testing.assert_array_equal(found, np.sort(ids))
    for i, vector in zip(ids, vectors, strict=True):
        stored = rows[int(i)]["vector"]
        if vectors.dtype == np.uint8:
            np.testing.assert_array_equal(bits(stored), vector)
        else:
            np.testing.assert_array_equal(np.asarray(stored, dtype=np.float32), vector)


@pytest.mark.server
def test_m2m_copies_every_listed_collection_partitions_and_deletions(tmp_path, run_cli, milvus_server):
    _, expected = legacy_directory(tmp_path / "milvus")
    body = {
        "milvus_version": "2.0.0",
        "source_milvus_path": str(tmp_path / "milvus"),
        "mysql_parameter": {"host": "", "user": "", "port": None, "password": "", "database": ""},
        "source_collection": {"floats": None, "bins": None},
        **destination(milvus_server, mode="skip"),
    }
    head, *lines = run_yaml(run_cli, tmp_path, write_yaml(tmp_path, "M2M", body))
    assert "2 collections" in head and len(lines) == 2 and all("verified: sample" in line for line in lines)
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    for partition in ("_default", "tag_a", "reused"):
        assert_copied(target, "floats", *expected.of("floats", partition), partition=partition)
    assert_copied(target, "bins", *expected.of("bins"))
    client = client_for(target)
    assert sorted(client.list_partitions("floats")) == ["_default", "reused", "tag_a"]
    metric = client.describe_index("bins", client.list_indexes("bins")[0])["metric_type"]
    assert metric == "HAMMING"
    _, *again = run_yaml(run_cli, tmp_path, write_yaml(tmp_path, "M2M", body))  # mode skip: each one skipped
    assert len(again) == 2 and all("skipped" in line for line in again)


def test_m2h_writes_a_file_per_partition_in_milvusdm_layout(tmp_path, run_cli):
    _, expected = legacy_directory(tmp_path / "milvus")
    body = {
        "milvus_version": "2.0.0",
        "source_milvus_path": str(tmp_path / "milvus"),
        "mysql_parameter": None,
        "source_collection": {"floats": ["tag-a", ""], "bins": None},
        "data_dir": str(tmp_path / "out"),
    }
    run_yaml(run_cli, tmp_path, write_yaml(tmp_path, "M2H", body))
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["bins__default.h5", "floats__default.h5", "floats_tag_a.h5"]
    for name, collection, partition in [
        ("floats_tag_a.h5", "floats", "tag_a"),
        ("bins__default.h5", "bins", "_default"),
    ]:
        ids, vectors = expected.of(collection, partition)
        with h5py.File(tmp_path / "out" / name) as file:
            np.testing.assert_array_equal(file["ids"][:], ids)
            np.testing.assert_array_equal(file["embeddings"][:], vectors)
            assert file["embeddings"].dtype == vectors.dtype  # binary: 2-D uint8, dim/8 bytes a row


@pytest.mark.server
def test_h2m_numbers_rows_takes_hdf5_files_and_overwrites_once(tmp_path, run_cli, milvus_server, rng):
    first, second = rng.standard_normal((300, 8), dtype=np.float32), rng.standard_normal((200, 8), dtype=np.float32)
    folder = tmp_path / "in"
    folder.mkdir()
    make_h5(folder / "a.h5", first)  # no ids: MilvusDM crashed here
    make_h5(folder / "b.hdf5", second)  # MilvusDM's data_dir skipped .hdf5 files
    (folder / "notes.txt").write_text("not data")
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    client_for(target).create_collection("h2m", dimension=8)
    client_for(target).insert("h2m", [{"id": 10**9, "vector": [0.0] * 8}])
    body = {
        "milvus-version": "2.0.0",
        "data_path": None,
        "data_dir": str(folder),
        "dest_collection_name": "h2m",
        "dest_partition_name": "",
        "collection_parameter": {"dimension": 8, "index_file_size": 1024, "metric_type": "IP"},
        **destination(milvus_server, mode="overwrite"),
    }
    run_yaml(run_cli, tmp_path, write_yaml(tmp_path, "H2M", body))
    assert_copied(target, "h2m", np.arange(500), np.concatenate([first, second]))
    client = client_for(target)
    assert client.describe_index("h2m", client.list_indexes("h2m")[0])["metric_type"] == "IP"


@pytest.mark.server
def test_f2m_into_a_named_partition(tmp_path, run_cli, milvus_server, rng):
    vectors = rng.standard_normal((400, 16), dtype=np.float32)
    ids = rng.choice(10**12, 400, replace=False).astype(np.int64) + 2**53
    index = faiss.IndexIDMap(faiss.IndexFlatL2(16))
    index.add_with_ids(vectors, ids)
    faiss.write_index(index, str(tmp_path / "f.index"))
    body = {
        "milvus_version": "2.0.0",
        "data_path": str(tmp_path / "f.index"),
        "dest_collection_name": "f2m",
        "dest_partition_name": "part_1",
        "collection_parameter": {"dimension": 16, "index_file_size": 1024, "metric_type": "L2"},
        **destination(milvus_server, mode="append"),
    }
    run_yaml(run_cli, tmp_path, write_yaml(tmp_path, "F2M", body))
    assert_copied({"uri": milvus_server.uri, "token": SERVER_TOKEN}, "f2m", ids, vectors, partition="part_1")


@pytest.mark.server
@pytest.mark.parametrize("layout", ["bytes", "uint8"])
def test_binary_hdf5_layouts_round_trip(tmp_path, run_cli, milvus_server, rng, layout):
    codes = rng.integers(0, 256, (300, 8), dtype=np.uint8)
    ids = np.arange(300, dtype=np.int64) * 3 + 2**55
    data = codes.view("S8").ravel() if layout == "bytes" else codes  # MilvusDM's |S8, or rows x bytes
    make_h5(tmp_path / "bin.h5", data, ids)
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    path = manifest(
        tmp_path,
        {"hdf5": {"path": str(tmp_path / "bin.h5")}},
        {"milvus": {**target, "collection": "bins", "index": {"type": "BIN_FLAT"}}},
        verify="full",
    )
    result = run_cli("run", "-f", path, "-q", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verified"] == "full (300 ids present, 300 rows equal, count 300)"
    assert_copied(target, "bins", ids, codes)
    client = client_for(target)
    field = next(f for f in client.describe_collection("bins")["fields"] if f["name"] == "vector")
    assert field["params"]["dim"] == 64
    export = manifest(
        tmp_path, {"milvus": {**target, "collection": "bins"}}, {"hdf5": {"path": str(tmp_path / "x.h5")}}
    )
    assert run_cli("run", "-f", export, "-q").exit_code == 0
    with h5py.File(tmp_path / "x.h5") as file:
        order = np.argsort(file["ids"][:])
        np.testing.assert_array_equal(file["ids"][:][order], ids)
        np.testing.assert_array_equal(file["embeddings"][:][order], codes)


def legacy_files(tmp_path) -> list:
    (tmp_path / "h").mkdir()
    make_h5(tmp_path / "h" / "x.hdf5", np.ones((2, 4), dtype=np.float32))
    common = {"dest_host": "milvus.example", "dest_port": 19530, "mode": "append"}
    params = {"dimension": 4, "index_file_size": 1024, "metric_type": "TANIMOTO"}
    return [
        write_yaml(
            tmp_path,
            "F2M",
            {
                "milvus_version": "2.0.0",
                "data_path": "/data/f.index",
                "dest_collection_name": "f",
                "dest_partition_name": "p",
                "collection_parameter": params,
                **common,
            },
        ),
        write_yaml(
            tmp_path,
            "H2M",
            {
                "milvus-version": "2.0.0",
                "data_dir": str(tmp_path / "h"),
                "dest_collection_name": "h",
                "collection_parameter": params,
                **common,
            },
        ),
        write_yaml(
            tmp_path,
            "M2M",
            {
                "source_milvus_path": "/milvus",
                "source_collection": {"a": None, "b": ["t-1"]},
                "mysql_parameter": {
                    "host": "mysql",
                    "user": "root",
                    "port": 3306,
                    "password": "pw",
                    "database": "milvus",
                },
                **common,
            },
        ),
        write_yaml(
            tmp_path,
            "M2H",
            {"source_milvus_path": "s3://bucket/milvus", "source_collection": {"a": None}, "data_dir": "/out"},
        ),
    ]


def test_convert_prints_manifests_valid_for_the_crd(tmp_path, run_cli):
    definition = yaml.safe_load((REPO / "crds" / "milvusmigrations.milvusdm.io.yaml").read_text())
    documents = {}
    for path in legacy_files(tmp_path):
        result = run_cli("convert", path)
        assert result.exit_code == 0, result.stderr
        documents[path.stem] = yaml.safe_load(result.stdout)
        assert validate(definition, documents[path.stem]) == []
        spec.parse(documents[path.stem])
    f2m = documents["F2M"]["spec"]
    assert f2m["target"]["milvus"] == {
        "uri": "http://milvus.example:19530",
        "collection": "f",
        "mode": "append",
        "partition": "p",
        "metric": "JACCARD",
    }
    assert documents["H2M"]["spec"]["source"]["hdf5"]["paths"] == [str(tmp_path / "h" / "x.hdf5")]
    m2m = documents["M2M"]["spec"]  # every listed collection in one manifest, each keeping its name
    assert m2m["source"]["milvus1x"]["collections"] == [{"name": "a"}, {"name": "b", "partitions": ["t-1"]}]
    assert m2m["source"]["milvus1x"]["meta"]["mysql"]["host"] == "mysql"
    assert m2m["target"]["milvus"] == {"uri": "http://milvus.example:19530", "mode": "append"}
    m2h = documents["M2H"]["spec"]
    assert m2h["source"]["milvus1x"]["collections"] == [{"name": "a"}]
    assert (m2h["source"]["milvus1x"].get("meta"), m2h["target"]["hdf5"]["path"]) == (None, "/out/")


@pytest.mark.parametrize(
    "body,phrase",
    [
        ({"F2M": {"data_path": "/f", "dest_collection_name": "c", "colection_parameter": {}}}, "unknown key"),
        (
            {
                "F2M": {
                    "data_path": "/f",
                    "dest_collection_name": "c",
                    "collection_parameter": {"metric_type": "SUBSTRUCTURE"},
                }
            },
            "SUBSTRUCTURE",
        ),
        ({"H2M": {"dest_collection_name": "c"}}, "needs data_dir"),
        ({"M2M": {"source_milvus_path": "/m", "source_collection": ["a"]}}, "source_collection must map"),
    ],
)
def test_bad_milvusdm_files_one_line(tmp_path, run_cli, body, phrase):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    result = run_cli("--yaml", path)
    assert result.exit_code == INPUT, result.stderr
    assert phrase in one_error_line(result)
