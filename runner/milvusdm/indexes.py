"""What milvusdm knows about Milvus index types: one row per type, to refuse before anything is
created what a server would refuse after (an unknown type, a parameter out of range, a metric
the vectors cannot take), and to fill in what a source leaves out (Milvus Lite reports IVF
indexes without their ``nlist``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pymilvus import DataType

from milvusdm.errors import InputError

FLOAT_METRICS = ("L2", "IP", "COSINE")
BINARY_METRICS = ("HAMMING", "JACCARD", "SUBSTRUCTURE", "SUPERSTRUCTURE")
METRICS: dict[DataType, tuple[str, ...]] = {  # what each kind of vector can be compared by
    DataType.FLOAT_VECTOR: FLOAT_METRICS,
    DataType.FLOAT16_VECTOR: FLOAT_METRICS,
    DataType.BFLOAT16_VECTOR: FLOAT_METRICS,
    DataType.BINARY_VECTOR: BINARY_METRICS,
    DataType.SPARSE_FLOAT_VECTOR: ("IP",),
}
NLIST = {"nlist": (1, 65536)}
# ann-benchmarks' distance names (and common spellings) -> Milvus metric; the first name per metric is written
DISTANCE_METRICS = {
    "euclidean": "L2",
    "l2": "L2",
    "angular": "COSINE",
    "cosine": "COSINE",
    "dot": "IP",
    "ip": "IP",
    "inner_product": "IP",
    "hamming": "HAMMING",
    "jaccard": "JACCARD",
}
DISTANCES = {metric: name for name, metric in reversed(DISTANCE_METRICS.items())}
# Servers before 2.4.5 build AUTOINDEX as their float default, HNSW, on binary vectors too: the
# 2.3.5 server builds it, then crashes (SIGSEGV in segcore Retrieve) on a query that reads those
# vectors back. They are sent what 2.4.5 and later build instead (autoIndex.params.binary.build),
# or BIN_FLAT for the metrics no IVF index takes.
BINARY_AUTOINDEX_SINCE = (2, 4, 5)
BINARY_AUTOINDEX: tuple[str, dict[str, Any]] = ("BIN_IVF_FLAT", {"nlist": 1024})


@dataclass(frozen=True)
class IndexType:
    metrics: tuple[str, ...]  # metrics it builds for (which also says which vectors it takes)
    ranges: dict[str, tuple[int, int]] = field(default_factory=dict)  # integer parameters and their bounds
    defaults: dict[str, int] = field(default_factory=dict)  # the server's defaults for what may be left out


INDEX_TYPES: dict[str, IndexType] = {
    "AUTOINDEX": IndexType(FLOAT_METRICS + BINARY_METRICS + ("IP",)),
    "FLAT": IndexType(FLOAT_METRICS),
    "IVF_FLAT": IndexType(FLOAT_METRICS, NLIST, {"nlist": 128}),
    "IVF_SQ8": IndexType(FLOAT_METRICS, NLIST, {"nlist": 128}),
    "IVF_PQ": IndexType(FLOAT_METRICS, NLIST | {"m": (1, 65536), "nbits": (1, 16)}, {"nlist": 128, "nbits": 8}),
    "SCANN": IndexType(FLOAT_METRICS, NLIST, {"nlist": 128}),
    "HNSW": IndexType(
        FLOAT_METRICS, {"M": (2, 2048), "efConstruction": (1, 2**31 - 1)}, {"M": 16, "efConstruction": 200}
    ),
    "DISKANN": IndexType(FLOAT_METRICS),
    "GPU_IVF_FLAT": IndexType(FLOAT_METRICS, NLIST, {"nlist": 128}),
    "GPU_IVF_PQ": IndexType(FLOAT_METRICS, NLIST, {"nlist": 128}),
    "GPU_CAGRA": IndexType(FLOAT_METRICS),
    "GPU_BRUTE_FORCE": IndexType(FLOAT_METRICS),
    "BIN_FLAT": IndexType(BINARY_METRICS),
    "BIN_IVF_FLAT": IndexType(("HAMMING", "JACCARD"), NLIST, {"nlist": 128}),  # no SUB/SUPERSTRUCTURE
    "SPARSE_INVERTED_INDEX": IndexType(("IP",)),
    "SPARSE_WAND": IndexType(("IP",)),
}


def check_spec(index_type: str, params: dict[str, Any], metric: str | None, where: str) -> None:
    """Offline: the type is known, its integer parameters are integers in range, and it builds for the metric."""
    known = INDEX_TYPES.get(index_type.upper())
    if known is None:
        raise InputError(f"{where}: unknown index type {index_type!r}", f"use one of {', '.join(INDEX_TYPES)}")
    for name, (lo, hi) in known.ranges.items():
        value = params.get(name)
        if value is not None and not lo <= _integer(value) <= hi:
            raise InputError(f"{where}: {index_type} parameter {name} is {value!r}", f"give an integer in {lo}..{hi}")
    if metric is not None and metric.upper() not in known.metrics:
        raise InputError(
            f"{where}: a {index_type} index cannot use metric {metric}",
            f"use {', '.join(known.metrics)}, or another index type",
        )


def check_vectors(
    index_type: str, params: dict[str, Any], metric: str, dtype: DataType, dim: int | None, field_name: str
) -> None:
    """Before creating anything: the index and metric fit the field's kind of vector and dimension."""
    where = f"the index on {field_name!r}"
    check_spec(index_type, params, metric, where)
    fits = METRICS.get(dtype, ())
    if metric.upper() not in fits:
        raise InputError(
            f"metric {metric} does not fit {field_name!r}, a {dtype.name} field (it would never be searchable)",
            f"set target.milvus.metric to one of {', '.join(fits)}",
        )
    m = _integer(params.get("m", 1))
    if index_type.upper() == "IVF_PQ" and dim and m > 0 and dim % m:
        raise InputError(
            f"{where}: IVF_PQ m={m} does not divide the dimension {dim}", "choose an m that divides the dimension"
        )


def _integer(value: Any) -> int:
    """An integer parameter as a manifest or a server gives it (servers report them as text); -1 if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return -1


def with_defaults(index_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with the server's defaults for those left out."""
    known = INDEX_TYPES.get(index_type.upper())
    return (known.defaults if known else {}) | params


def server_version(text: str) -> tuple[int, ...] | None:
    """A Milvus server's release, (2, 3, 5) from ``v2.3.5-lite``; None for anything else
    (Milvus Lite answers ``milvus_lite-3.2.2``)."""
    found = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)\S*", text.strip())
    return tuple(int(part) for part in found.groups()) if found else None


def for_server(
    index_type: str, params: dict[str, Any], metric: str | None, dtype: DataType, version: tuple[int, ...] | None
) -> tuple[str, dict[str, Any]]:
    """The index to send a server of ``version`` (None: Milvus Lite, which needs no translation)."""
    old = version is not None and version < BINARY_AUTOINDEX_SINCE
    if old and dtype == DataType.BINARY_VECTOR and index_type.upper() == "AUTOINDEX":
        kind, defaults = BINARY_AUTOINDEX
        fits = (metric or "HAMMING").upper() in INDEX_TYPES[kind].metrics
        return (kind, dict(defaults)) if fits else ("BIN_FLAT", {})
    return index_type, params
