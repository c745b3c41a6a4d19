"""What the manifest alone shows is wrong: checked by ``validate`` and before a run touches anything."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from milvusdm.errors import InputError
from milvusdm.indexes import check_spec
from milvusdm.spec import MilvusEndpoint, MilvusMigration

DEFAULT_PORT = 19530


def server_identity(endpoint: MilvusEndpoint) -> tuple[str, str] | tuple[str, frozenset[str | int], int]:
    """Where an endpoint really is: Lite's resolved folder, or a server's addresses and port
    (``localhost`` and ``127.0.0.1`` are one server)."""
    if endpoint.is_lite:
        return ("lite", str(Path(endpoint.uri).expanduser().resolve()))
    parts = urlsplit(endpoint.uri)
    host, port = parts.hostname or "localhost", parts.port or DEFAULT_PORT
    addresses: set[str | int]  # the first item of a socket address: a host (an int for AF_UNIX-like families)
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError:  # unresolvable: compare the spelling
        addresses = {host}
    loopback = {"127.0.0.1", "::1"}
    return ("server", frozenset(loopback if addresses & loopback else addresses), port)


def same_server(a: MilvusEndpoint, b: MilvusEndpoint) -> bool:
    one, other = server_identity(a), server_identity(b)
    if one[0] != other[0] or one[-1] != other[-1]:
        return False
    if isinstance(one[1], frozenset) and isinstance(other[1], frozenset):  # servers: any shared address
        return bool(one[1] & other[1])
    return one[1] == other[1]


def _check_names(migration: MilvusMigration) -> None:
    """Field names that would collide in the collection."""
    target, hdf5 = migration.spec.target.milvus, migration.spec.source.hdf5
    assert target is not None
    if target.id_field == target.vector_field:
        raise InputError(
            f"target.milvus.idField and vectorField are both {target.id_field!r}",
            "give the key and the vector different names",
        )
    mapping = hdf5.fields if hdf5 is not None else {}
    fields = list(mapping.values())
    reserved = {target.id_field: "idField", target.vector_field: "vectorField"}
    for name in fields:
        if fields.count(name) > 1:
            datasets = [d for d, f in mapping.items() if f == name]
            raise InputError(
                f"source.hdf5.fields maps {', '.join(map(repr, datasets))} to one field {name!r}",
                "give every dataset its own field name",
            )
        if name in reserved:
            raise InputError(
                f"source.hdf5.fields names a field {name!r}, the target's {reserved[name]}",
                f"rename that field, or set target.milvus.{reserved[name]}",
            )


def check(migration: MilvusMigration) -> None:
    """Refuse what would destroy data or cannot work, before anything is read or written."""
    source, target = migration.spec.source.milvus, migration.spec.target.milvus
    if target is not None:
        index = target.index
        check_spec(index.type, index.params, target.metric, "target.milvus.index")
        _check_names(migration)
    if source is None or target is None or (source.database, source.collection) != (target.database, target.collection):
        return
    if same_server(source, target):
        raise InputError(
            f"source and target are the same collection {source.collection!r} at {target.uri}: the copy would destroy it",
            "choose another target collection or server",
        )
