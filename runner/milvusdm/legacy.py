"""MilvusDM's (PyPI ``pymilvusdm`` 2.0) YAML files, run as they are: each becomes the
equivalent ``MilvusMigration`` manifest(s), so it streams, verifies and resumes like any other.

A file has one top-level key, its kind: F2M (a Faiss file), H2M (HDF5 files), M2M (a Milvus
0.10/1.x data directory to Milvus 2.x) or M2H (the same directory to HDF5 files). Where
MilvusDM misbehaved, this does the sensible thing (see the README): H2M without ``ids``
numbers rows, ``data_dir`` takes .h5 and .hdf5, ``overwrite`` drops the collection once for
all files, ``skip`` skips only an existing collection, every listed M2M collection is copied,
and a partition named '' is the default partition.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from milvusdm import spec
from milvusdm.errors import InputError

KINDS = ("F2M", "H2M", "M2M", "M2H")
DESTINATION = {"dest_host", "dest_port", "mode", "dest_collection_name", "dest_partition_name", "collection_parameter"}
SOURCE_1X = {"source_milvus_path", "mysql_parameter", "source_collection"}
KEYS = {
    "F2M": {"milvus_version", "data_path"} | DESTINATION,
    "H2M": {"milvus_version", "milvus-version", "data_path", "data_dir"} | DESTINATION,
    "M2M": {"milvus_version", "milvus-version"} | SOURCE_1X | {"dest_host", "dest_port", "mode"},
    "M2H": {"milvus_version", "milvus-version"} | SOURCE_1X | {"data_dir"},
}
MODES = {"append": "append", "skip": "skip", "overwrite": "overwrite"}
# MilvusDM's metric names -> Milvus 2.x's (its binary metrics picked binary vectors, as the files' layout does here)
METRICS = {"L2": "L2", "IP": "IP", "HAMMING": "HAMMING", "JACCARD": "JACCARD", "TANIMOTO": "JACCARD"}
DROPPED_METRICS = ("SUBSTRUCTURE", "SUPERSTRUCTURE")


def is_legacy(document: Any) -> bool:
    """A MilvusDM YAML: a mapping with a single key naming its kind."""
    return isinstance(document, dict) and len(document) == 1 and next(iter(document)) in KINDS


def convert(document: dict[str, Any], origin: str) -> dict[str, Any]:
    """The manifest equivalent to a MilvusDM YAML (M2M/M2H: every listed collection, each copied
    under its own name with its own checkpoint)."""
    ((kind, body),) = document.items()
    if not isinstance(body, dict):
        raise InputError(
            f"{origin}: {kind} must be a mapping of MilvusDM settings", "see MilvusDM's example YAML files"
        )
    unknown = sorted(set(body) - KEYS[kind])
    if unknown:
        raise InputError(
            f"{origin}: {kind} has unknown key(s) {', '.join(unknown)}",
            f"use MilvusDM's keys: {', '.join(sorted(KEYS[kind]))}",
        )
    if kind in ("F2M", "H2M"):
        source = _faiss(body, origin) if kind == "F2M" else _hdf5(body, origin)
        target = _target(body, origin, _required(body, "dest_collection_name", kind, origin))
        target["partition"] = body.get("dest_partition_name") or None
        metric = _metric((body.get("collection_parameter") or {}).get("metric_type"), origin)
        if metric:
            target["metric"] = metric
        return _manifest(kind, [target["collection"]], source, {"milvus": _drop_none(target)})
    chosen = _collections(body, kind, origin)
    collections = [
        _drop_none({"name": name, "partitions": [str(t) if t else "_default" for t in tags] if tags else None})
        for name, tags in chosen.items()
    ]
    source = {
        "milvus1x": _drop_none(
            {
                "path": str(_required(body, "source_milvus_path", kind, origin)),
                "meta": _meta(body.get("mysql_parameter")),
                "collections": collections,
            }
        )
    }
    if kind == "M2M":
        target = {"milvus": _drop_none(_target(body, origin, None))}
    else:
        target = {"hdf5": {"path": str(_required(body, "data_dir", kind, origin)).rstrip("/") + "/"}}
    return _manifest(kind, list(chosen), source, target)


def load(path: Path) -> spec.MilvusMigration:
    """The migration of a file: a MilvusMigration manifest, or a MilvusDM YAML's equivalent."""
    document = spec.read_document(path)
    if not is_legacy(document):
        return spec.parse(document, origin=f"manifest {path}")
    return spec.parse(convert(document, str(path)), origin=f"{path} (as MilvusMigration)")


def _required(body: dict[str, Any], key: str, kind: str, origin: str) -> Any:
    if body.get(key) in (None, ""):
        raise InputError(f"{origin}: {kind} needs {key}", f"add {key} to the {kind} file")
    return body[key]


def _faiss(body: dict[str, Any], origin: str) -> dict[str, Any]:
    return {"faiss": {"path": str(_required(body, "data_path", "F2M", origin))}}


def _hdf5(body: dict[str, Any], origin: str) -> dict[str, Any]:
    """``data_path`` (files) or ``data_dir`` (every .h5 and .hdf5 file in it, sorted)."""
    if body.get("data_path"):
        paths = body["data_path"] if isinstance(body["data_path"], list) else [body["data_path"]]
        return {"hdf5": {"paths": [str(p) for p in paths]}}
    folder = Path(str(_required(body, "data_dir", "H2M", origin)))
    files = sorted(str(p) for p in folder.glob("*") if p.suffix in (".h5", ".hdf5") and p.is_file())
    if not files:
        raise InputError(f"{origin}: data_dir {folder} holds no .h5 or .hdf5 file", "check data_dir")
    return {"hdf5": {"paths": files}}


def _target(body: dict[str, Any], origin: str, collection: str | None) -> dict[str, Any]:
    host = body.get("dest_host") or "127.0.0.1"
    port = body.get("dest_port") or 19530
    mode = str(body.get("mode") or "append")
    if mode not in MODES:
        raise InputError(f"{origin}: mode {mode!r} is not one of MilvusDM's modes", "use skip, append or overwrite")
    return {"uri": f"http://{host}:{port}", "collection": collection, "mode": MODES[mode]}


def _metric(name: Any, origin: str) -> str | None:
    if name in (None, ""):
        return None
    name = str(name).upper()
    if name in DROPPED_METRICS:
        raise InputError(
            f"{origin}: metric {name} has no index on Milvus 2.x that milvusdm builds",
            "use HAMMING, JACCARD or TANIMOTO for binary vectors",
        )
    if name not in METRICS:
        raise InputError(f"{origin}: unknown metric_type {name}", f"use one of {', '.join(METRICS)}")
    return METRICS[name]


def _meta(mysql: dict[str, Any] | None) -> dict[str, Any] | None:
    """Empty or missing MySQL settings mean the directory's SQLite meta (db/meta.sqlite)."""
    if not mysql or not mysql.get("host"):
        return None
    settings = {
        "host": str(mysql["host"]),
        "port": int(mysql.get("port") or 3306),
        "user": str(mysql.get("user") or "root"),
        "database": str(mysql.get("database") or "milvus"),
    }
    if mysql.get("password"):
        settings["password"] = str(mysql["password"])
    return {"mysql": settings}


def _collections(body: dict[str, Any], kind: str, origin: str) -> dict[str, list[Any] | None]:
    chosen = _required(body, "source_collection", kind, origin)
    if not isinstance(chosen, dict):
        raise InputError(
            f"{origin}: source_collection must map collection names to partition tags (or null)",
            "write source_collection: {my_collection: [tag1, tag2]} or {my_collection: null}",
        )
    return {str(name): (list(tags) if tags else None) for name, tags in chosen.items()}


def _manifest(kind: str, collections: list[str], source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    name = re.sub(r"[^a-z0-9.-]+", "-", "-".join([kind, *collections]).lower())[:253].strip("-.")
    return {
        "apiVersion": spec.API_VERSION,
        "kind": spec.KIND,
        "metadata": {"name": name},
        "spec": {"source": source, "target": target},
    }


def _drop_none(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if value is not None}
