"""Index specs a server would refuse are refused offline (issue #14, cases 5-7)."""

import pytest
from pymilvus import DataType

from milvusdm.errors import InputError
from milvusdm.indexes import check_spec, check_vectors, with_defaults


@pytest.mark.parametrize(
    ("index_type", "params", "metric", "words"),
    [
        ("NOPE", {}, None, "unknown index type 'NOPE'"),
        ("HNSW", {"M": -1}, None, "HNSW parameter M is -1"),
        ("IVF_FLAT", {"nlist": "many"}, None, "parameter nlist is 'many'"),
        ("HNSW", {}, "HAMMING", "a HNSW index cannot use metric HAMMING"),
        ("BIN_IVF_FLAT", {}, "L2", "cannot use metric L2"),
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
