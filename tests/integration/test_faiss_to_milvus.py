"""Faiss -> Milvus for every index type: exact ids, and vectors equal to the originals
(exact types) or to the index's own decoding (compressed types)."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from tests.conftest import client_for, make_h5, manifest, read_back

DIM, ROWS = 32, 3000
DATA = np.random.default_rng(7).random((ROWS, DIM), dtype=np.float32)
CUSTOM_IDS = np.random.default_rng(8).choice(2**62, size=ROWS, replace=False).astype(np.int64)


def ivf(kind: str):
    quantizer = faiss.IndexFlatL2(DIM)
    index = {
        "flat": lambda: faiss.IndexIVFFlat(quantizer, DIM, 16),
        "sq": lambda: faiss.IndexIVFScalarQuantizer(quantizer, DIM, 16, faiss.ScalarQuantizer.QT_8bit),
        "pq": lambda: faiss.IndexIVFPQ(quantizer, DIM, 16, 8, 6),
    }[kind]()
    index.train(DATA)
    index.own_fields = True  # the quantizer lives as long as the index
    quantizer.this.disown()
    return index


def trained(index):
    index.train(DATA)
    return index


# name -> (build, custom ids?, lossy?, expected metric)
INDEXES = {
    "IndexFlatL2": (lambda: faiss.IndexFlatL2(DIM), False, False, "L2"),
    "IndexFlatIP": (lambda: faiss.IndexFlatIP(DIM), False, False, "IP"),
    "IndexIDMap(Flat)": (lambda: faiss.IndexIDMap(faiss.IndexFlatL2(DIM)), True, False, "L2"),
    "IndexIDMap2(FlatIP)": (lambda: faiss.IndexIDMap2(faiss.IndexFlatIP(DIM)), True, False, "IP"),
    "IndexIVFFlat": (lambda: ivf("flat"), True, False, "L2"),
    "IndexHNSWFlat": (lambda: faiss.IndexHNSWFlat(DIM, 8), False, False, "L2"),
    "IndexScalarQuantizer": (
        lambda: trained(faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_8bit)),
        False,
        True,
        "L2",
    ),
    "IndexPQ": (lambda: trained(faiss.IndexPQ(DIM, 8, 6)), False, True, "L2"),
    "IndexIVFScalarQuantizer": (lambda: ivf("sq"), True, True, "L2"),
    "IndexIVFPQ": (lambda: ivf("pq"), True, True, "L2"),
    "IndexHNSWSQ": (lambda: trained(faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, 8)), False, True, "L2"),
    "IndexIDMap(PQ)": (lambda: faiss.IndexIDMap(trained(faiss.IndexPQ(DIM, 8, 6))), True, True, "L2"),
}


def build(name: str, path):
    make, custom, lossy, metric = INDEXES[name]
    index = make()
    ids = CUSTOM_IDS if custom else np.arange(ROWS, dtype=np.int64)
    if custom:
        index.add_with_ids(DATA, ids)
    else:
        index.add(DATA)
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    if not lossy:
        expected = DATA
    elif isinstance(inner, faiss.IndexIVF):  # the index's own decoding of each vector's code
        expected = inner.sa_decode(inner.sa_encode(DATA))
    else:
        expected = inner.reconstruct_n(0, ROWS)
    faiss.write_index(index, str(path))
    return ids, expected, lossy, metric


def migrate(run_cli, tmp_path, path, target, collection, **spec):
    result = run_cli(
        "run",
        "-f",
        manifest(
            tmp_path,
            {"faiss": {"path": str(path)}},
            {"milvus": {**target, "collection": collection}},
            verify="full",
            **spec,
        ),
        "-q",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def check(run_cli, tmp_path, target, name):
    ids, expected, lossy, metric = build(name, tmp_path / "index.faiss")
    collection = "f_" + "".join(c for c in name.lower() if c.isalnum())
    summary = migrate(run_cli, tmp_path, tmp_path / "index.faiss", target, collection)
    assert summary["verified"] == f"full ({ROWS} ids present, {ROWS} rows equal, count {ROWS})"
    assert (summary["warnings"] == ["vectors are decoded approximations of the originals (lossy index)"]) == lossy
    found, rows = read_back(target, collection)
    np.testing.assert_array_equal(found, np.sort(ids))
    for i in range(0, ROWS, 101):
        np.testing.assert_array_equal(np.asarray(rows[int(ids[i])]["vector"], dtype=np.float32), expected[i])
    client = client_for(target)
    assert client.describe_index(collection, client.list_indexes(collection)[0])["metric_type"] == metric


@pytest.mark.parametrize("name", INDEXES)
def test_every_index_type_into_lite(tmp_path, run_cli, lite, name):
    check(run_cli, tmp_path, lite, name)


@pytest.mark.server
@pytest.mark.parametrize("name", INDEXES)
def test_every_index_type_into_the_server(tmp_path, run_cli, milvus_server, name):
    from tests.conftest import SERVER_TOKEN

    check(run_cli, tmp_path, {"uri": milvus_server.uri, "token": SERVER_TOKEN}, name)


@pytest.mark.server
@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "idmap"])
def test_binary_indexes_into_the_server(tmp_path, run_cli, milvus_server, kind):
    from tests.conftest import SERVER_TOKEN

    bits = 128
    codes = np.random.default_rng(3).integers(0, 256, size=(2000, bits // 8), dtype=np.uint8)
    ids = np.arange(2000, dtype=np.int64) * 11 + 5 if kind in ("ivf", "idmap") else np.arange(2000)
    index = {
        "flat": lambda: faiss.IndexBinaryFlat(bits),
        "ivf": lambda: faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, 8),
        "hnsw": lambda: faiss.IndexBinaryHNSW(bits, 8),
        "idmap": lambda: faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(bits)),
    }[kind]()
    if kind == "ivf":
        index.train(codes)
    index.add_with_ids(codes, ids) if kind in ("ivf", "idmap") else index.add(codes)
    faiss.write_index_binary(index, str(tmp_path / "bin.faiss"))
    target = {"uri": milvus_server.uri, "token": SERVER_TOKEN}
    summary = migrate(
        run_cli,
        tmp_path,
        tmp_path / "bin.faiss",
        target,
        f"bin_{kind}",
    )
    assert summary["verified"] == "full (2000 ids present, 2000 rows equal, count 2000)"
    found, rows = read_back(target, f"bin_{kind}")
    np.testing.assert_array_equal(found, np.sort(ids))
    stored = rows[int(ids[77])]["vector"]
    stored = stored[0] if isinstance(stored, list) else stored
    assert bytes(stored) == codes[77].tobytes()
    client = client_for(target)
    index = client.describe_index(f"bin_{kind}", client.list_indexes(f"bin_{kind}")[0])
    # the 2.3.5 server builds AUTOINDEX as a float HNSW, and crashes reading binary vectors from it
    assert (index["index_type"], index["metric_type"]) == ("BIN_IVF_FLAT", "HAMMING")


def test_manifest_metric_overrides_the_index(tmp_path, run_cli, lite):
    faiss.write_index(faiss.IndexFlatL2(DIM), str(tmp_path / "empty.faiss"))
    index = faiss.IndexFlatL2(DIM)
    index.add(DATA[:100])
    faiss.write_index(index, str(tmp_path / "l2.faiss"))
    migrate(run_cli, tmp_path, tmp_path / "l2.faiss", {**lite, "metric": "COSINE"}, "cos")
    client = client_for(lite)
    assert client.describe_index("cos", client.list_indexes("cos")[0])["metric_type"] == "COSINE"


def test_empty_index_gives_an_empty_collection(tmp_path, run_cli, lite):
    faiss.write_index(faiss.IndexFlatL2(DIM), str(tmp_path / "empty.faiss"))
    summary = migrate(run_cli, tmp_path, tmp_path / "empty.faiss", lite, "empty")
    assert summary["rows"] == 0 and summary["warnings"] == ["the source holds no rows: the target is created empty"]
    assert client_for(lite).has_collection("empty")


def fails(run_cli, tmp_path, path, target, phrase, code=2):
    result = run_cli(
        "run",
        "-f",
        manifest(tmp_path, {"faiss": {"path": str(path)}}, {"milvus": {**target, "collection": "bad"}}),
        "-q",
    )
    assert result.exit_code == code, result.stderr
    assert phrase in result.stderr and "fix:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_faiss_files(tmp_path, run_cli, lite):
    fails(run_cli, tmp_path, tmp_path / "missing.faiss", lite, "does not exist")
    (tmp_path / "text.faiss").write_text("not an index at all")
    fails(run_cli, tmp_path, tmp_path / "text.faiss", lite, "is not a readable Faiss index")
    index = faiss.IndexFlatL2(DIM)
    index.add(DATA)
    faiss.write_index(index, str(tmp_path / "whole.faiss"))
    data = (tmp_path / "whole.faiss").read_bytes()
    (tmp_path / "cut.faiss").write_bytes(data[: len(data) // 3])
    fails(run_cli, tmp_path, tmp_path / "cut.faiss", lite, "is not a readable Faiss index")
    pre = faiss.IndexPreTransform(faiss.PCAMatrix(DIM, 8), faiss.IndexFlatL2(8))
    pre.train(DATA)
    pre.add(DATA)
    faiss.write_index(pre, str(tmp_path / "pca.faiss"))
    fails(run_cli, tmp_path, tmp_path / "pca.faiss", lite, "holds a IndexPreTransform, which milvusdm cannot read")
    assert not client_for(lite).has_collection("bad")


def test_duplicate_ids_in_an_idmap_are_refused(tmp_path, run_cli, lite):
    index = faiss.IndexIDMap(faiss.IndexFlatL2(DIM))
    index.add_with_ids(DATA[:10], np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 1]))
    faiss.write_index(index, str(tmp_path / "dup.faiss"))
    fails(run_cli, tmp_path, tmp_path / "dup.faiss", lite, "1 duplicate id(s), e.g. 1")


def test_dimension_clash_with_an_existing_collection(tmp_path, run_cli, lite, rng):
    make_h5(tmp_path / "d8.h5", rng.random((10, 8), dtype=np.float32))
    ok = run_cli(
        "run",
        "-f",
        manifest(tmp_path, {"hdf5": {"path": str(tmp_path / "d8.h5")}}, {"milvus": {**lite, "collection": "bad"}}),
        "-q",
    )
    assert ok.exit_code == 0
    index = faiss.IndexFlatL2(DIM)
    index.add(DATA[:10])
    faiss.write_index(index, str(tmp_path / "d32.faiss"))
    fails(run_cli, tmp_path, tmp_path / "d32.faiss", {**lite, "mode": "append"}, "dimension 8, the source has 32")


def test_ivf_with_empty_lists(tmp_path, run_cli, lite):
    quantizer = faiss.IndexFlatL2(DIM)
    index = faiss.IndexIVFFlat(quantizer, DIM, 64)
    index.train(DATA)
    few = DATA[:20]  # 20 vectors over 64 lists: most lists stay empty
    index.add_with_ids(few, np.arange(20) * 1000)
    faiss.write_index(index, str(tmp_path / "sparse.faiss"))
    summary = migrate(run_cli, tmp_path, tmp_path / "sparse.faiss", lite, "sparse")
    assert summary["verified"] == "full (20 ids present, 20 rows equal, count 20)"
