"""Index specs a server would refuse are refused offline (issue #14, cases 5-7)."""

import pytest
from pymilvus import DataType

from milvusdm.errors import InputError
from milvusdm.indexes import check_spec, check_vectors, for_server, server_version, with_defaults


@pytest.mark.parametrize(
    ("index_type", "params", "metric", "words"),
    [
        ("NOPE", {}, None, "unknown index type 'NOPE'"),
        ("HNSW", {"M": -1}, None, "HNSW parameter M is -1"),
        ("IVF_FLAT", {"nlist": "many"}, None, "parameter nlist is 'many'"),
        ("HNSW", {}, "HAMMING", "a HNSW index cannot use metric HAMMING"),
        ("BIN_IVF_FLAT", {}, "L2", "cannot use metric L2"),
        ("BIN_IVF_FLAT", {}, "SUPERSTRUCTURE", "cannot use metric SUPERSTRUCTURE"),
    ],
)
def test_bad_specs_are_refused(index_type, params, metric, words):
    with pytest.raises(InputError, match=words):
        check_spec(index_type, params, metric, "target.milvus.index")


def test_good_specs_pass_with_parameters_as_servers_report_them():
    check_spec("HNSW", {"M": "16", "efConstruction": 200}, "COSINE", "x")
    check_spec("autoindex", {}, "HAMMING", "x")


@pytest.mark.parametrize(
    ("index_type", "params", "metric", "dtype", "words"),
    [
        ("AUTOINDEX", {}, "HAMMING", DataType.FLOAT_VECTOR, "metric HAMMING does not fit 'v', a FLOAT_VECTOR field"),
        ("AUTOINDEX", {}, "L2", DataType.BINARY_VECTOR, "metric L2 does not fit 'v', a BINARY_VECTOR field"),
        ("IVF_PQ", {"nlist": 16, "m": 5}, "L2", DataType.FLOAT_VECTOR, "IVF_PQ m=5 does not divide the dimension 16"),
    ],
)
def test_metric_and_index_must_fit_the_vectors(index_type, params, metric, dtype, words):
    with pytest.raises(InputError, match=words):
        check_vectors(index_type, params, metric, dtype, 16, "v")


def test_left_out_parameters_get_the_servers_defaults():
    assert with_defaults("IVF_FLAT", {}) == {"nlist": 128}
    assert with_defaults("IVF_FLAT", {"nlist": 64}) == {"nlist": 64}
    assert with_defaults("FLAT", {}) == {}


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("v2.3.5-lite", (2, 3, 5)),
        ("2.4.5", (2, 4, 5)),
        ("v2.5.10", (2, 5, 10)),
        ("milvus_lite-3.2.2", None),
        ("", None),
    ],
)
def test_server_versions_are_read_from_what_servers_answer(text, version):
    assert server_version(text) == version


@pytest.mark.parametrize(
    ("version", "dtype", "index_type", "metric", "sent"),
    [
        ((2, 3, 5), DataType.BINARY_VECTOR, "AUTOINDEX", "HAMMING", ("BIN_IVF_FLAT", {"nlist": 1024})),
        ((2, 4, 4), DataType.BINARY_VECTOR, "autoindex", "JACCARD", ("BIN_IVF_FLAT", {"nlist": 1024})),
        ((2, 3, 5), DataType.BINARY_VECTOR, "AUTOINDEX", "SUBSTRUCTURE", ("BIN_FLAT", {})),  # no IVF takes it
        ((2, 4, 5), DataType.BINARY_VECTOR, "AUTOINDEX", "HAMMING", ("AUTOINDEX", {})),  # picks BIN_IVF_FLAT itself
        (None, DataType.BINARY_VECTOR, "AUTOINDEX", "HAMMING", ("AUTOINDEX", {})),  # Milvus Lite
        ((2, 3, 5), DataType.FLOAT_VECTOR, "AUTOINDEX", "L2", ("AUTOINDEX", {})),
        ((2, 3, 5), DataType.BINARY_VECTOR, "BIN_FLAT", "HAMMING", ("BIN_FLAT", {})),
    ],
)
def test_binary_autoindex_is_never_the_float_hnsw_of_servers_before_2_4_5(version, dtype, index_type, metric, sent):
    assert for_server(index_type, {}, metric, dtype, version) == sent
