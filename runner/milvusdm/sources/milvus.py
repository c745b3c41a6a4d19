"""A collection on a Milvus 2.x server or in Milvus Lite, read with its whole schema.

Rows are addressed by position in (partition, primary key) order: each partition's rows,
counted up front, are paged through by key (``key > last`` with the server's iterator
ordering), so a checkpoint's position maps back to a key by skipping that many keys — read
alone, without vectors. The source must not change while it is copied.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
from pymilvus import DataType

from milvusdm import datatypes
from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.milvus import (
    QUERY_WINDOW,
    Connection,
    OneCollection,
    collection_identity,
    everything,
    literal,
    rows_per_message,
)
from milvusdm.schema import DYNAMIC_FIELD, Column, Index, Schema
from milvusdm.sources.base import Source
from milvusdm.spec import MilvusSource as MilvusSpec
from milvusdm.wire import unsupported

log = logging.getLogger(__name__)
LOOKUP_KEYS = 5_000  # keys per `key in [...]` query
INDEX_KEYS = {
    "index_type",
    "metric_type",
    "field_name",
    "index_name",
    "total_rows",
    "indexed_rows",
    "pending_index_rows",
    "state",
    "params",
}


def column_of(field: dict[str, Any]) -> Column:
    """A field as ``describe_collection`` reports it."""
    params = field.get("params", {})

    def number(key: str) -> int | None:
        return int(params[key]) if key in params else None

    return Column(
        field["name"],
        field["type"],
        max_length=number("max_length"),
        dim=number("dim"),
        element_type=field.get("element_type"),
        max_capacity=number("max_capacity"),
        description=field.get("description", ""),
        partition_key=bool(field.get("is_partition_key")),
    )


class MilvusSource(OneCollection, Source):
    spec: MilvusSpec

    def __init__(self, spec: MilvusSpec) -> None:
        self.spec = spec
        self.parts: list[tuple[str, int, int]] = []  # (partition, first position, rows)

    @property
    def key(self) -> Column:
        """The primary key (``_schema`` always finds one)."""
        if self.schema.key is None:
            raise RuntimeError(f"{self.describe()} has no primary key")
        return self.schema.key

    def describe(self) -> str:
        return f"milvus:{self.spec.uri}/{self.spec.collection}"

    def identities(self) -> set[str]:
        return {collection_identity(self.milvus, self.collection)}

    def open(self) -> None:
        spec = self.spec
        self._milvus = Connection(spec, "source")
        client, name = self.milvus.client, spec.collection
        if not self.milvus.retry("check the collection", client.has_collection, name):
            present = self.milvus.retry("list collections", client.list_collections)
            raise InputError(
                f"source collection {name!r} does not exist at {spec.uri} (collections: {', '.join(present) or 'none'})",
                "check source.milvus.collection",
            )
        info = self.milvus.retry("describe the collection", client.describe_collection, name)
        self.schema = self._schema(info)
        self.columns = [self.key, self.schema.vector, *self.schema.scalars]
        self._ensure_loaded()
        self.parts, start = [], 0
        for partition in self._partitions():
            rows = self._count(partition)
            self.parts.append((partition, start, rows))
            start += rows
        self.total = start
        self.schema = replace(self.schema, partitions=tuple((p, rows) for p, _, rows in self.parts))

    def _schema(self, info: dict[str, Any]) -> Schema:
        columns = [column_of(f) for f in info["fields"]]
        key = next(c for c, f in zip(columns, info["fields"], strict=True) if f.get("is_primary"))
        wanted = self.spec.fields
        if wanted is not None:
            unknown = sorted(set(wanted) - {c.name for c in columns})
            if unknown:
                raise InputError(
                    f"source collection {self.spec.collection!r} has no field {', '.join(map(repr, unknown))} "
                    f"(fields: {', '.join(c.name for c in columns)})",
                    "check source.milvus.fields",
                )
            columns = [c for c in columns if c.name in wanted or c is key]
        elif info.get("enable_dynamic_field"):
            columns.append(Column(DYNAMIC_FIELD, DataType.JSON))
        for column in columns:
            if not datatypes.copyable(column.dtype, column.element_type):
                raise unsupported(column)
        vectors = [c for c in columns if c.is_vector]
        if not vectors:
            raise InputError(
                f"the fields chosen from {self.spec.collection!r} include no vector field",
                "add a vector field to source.milvus.fields",
            )
        vector = vectors[0]
        indexes = self._indexes({c.name for c in columns})
        metric = next((i.metric_type for i in indexes if i.field == vector.name), None)
        if vector.dim is None:  # describe_collection gives every dense vector its dimension
            raise InputError(
                f"vector field {vector.name!r} of {self.spec.collection!r} has no dimension",
                "choose a dense vector field in source.milvus.fields",
            )
        return Schema(
            dim=vector.dim,
            vector_type=vector.dtype,
            vector_name=vector.name,
            key=key,
            scalars=tuple(c for c in columns if c is not key and c is not vector),
            metric=metric,
            name=self.spec.collection,
            description=info.get("description", ""),
            indexes=tuple(indexes),
            auto_id=bool(info.get("auto_id")),
        )

    def _indexes(self, fields: set[str]) -> list[Index]:
        client, name = self.milvus.client, self.spec.collection
        indexes = []
        for index_name in self.milvus.retry("list indexes", client.list_indexes, name):
            found = self.milvus.retry("describe an index", client.describe_index, name, index_name)
            if found and found.get("field_name") in fields:
                params = {k: v for k, v in found.items() if k not in INDEX_KEYS} | found.get("params", {})
                indexes.append(
                    Index(found["field_name"], found["index_type"], found.get("metric_type"), params, index_name)
                )
        return indexes

    def _ensure_loaded(self) -> None:
        client, name = self.milvus.client, self.spec.collection
        state = self.milvus.retry("check the load state", client.get_load_state, name)
        if str(state.get("state")) != "Loaded":
            log.warning("loading source collection %s to read it (it stays loaded)", name)
            self.milvus.call("load the source collection", client.load_collection, name, timeout=None)

    def _partitions(self) -> list[str]:
        present = self.milvus.retry("list partitions", self.milvus.client.list_partitions, self.spec.collection)
        chosen = self.spec.partitions or present
        missing = [p for p in chosen if p not in present]
        if missing:
            raise InputError(
                f"source collection {self.spec.collection!r} has no partition {', '.join(map(repr, missing))} "
                f"(partitions: {', '.join(present)})",
                "check source.milvus.partitions",
            )
        return chosen

    def _filter(self, after: Any = None) -> str:
        parts = [f"({self.spec.filter})"] if self.spec.filter else []
        if after is not None:
            parts.append(f"{self.key.name} > {literal(after)}")
        return " and ".join(parts) or everything(self.key)

    def _count(self, partition: str) -> int:
        """Rows of a partition the filter selects: the first query with the filter, so a filter
        the server cannot use is refused here, before the target is touched."""
        try:
            rows = self.milvus.retry(
                "count the source rows",
                self.milvus.client.query,
                self.spec.collection,
                filter=self._filter(),
                output_fields=["count(*)"],
                partition_names=[partition],
                consistency_level="Strong",
            )
        except InputError as error:
            if not self.spec.filter:
                raise
            names = ", ".join(c.name for c in self.columns)
            raise InputError(
                f"source.milvus.filter {self.spec.filter!r} does not work on {self.spec.collection!r}: "
                f"{error.problem.partition(': ')[2]}",
                f"write the filter in Milvus' expression language over the collection's fields ({names})",
            ) from None
        return int(rows[0]["count(*)"])

    def _page(self, columns: list[Column], partition: str, after: Any, limit: int) -> list[np.ndarray]:
        return self.milvus.query(self.collection, self._filter(after), columns, [partition], limit=limit)

    def _seek(self, partition: str, skip: int) -> Any:
        """The key after which a partition's row ``skip`` comes (None: from the start)."""
        after: Any = None
        while skip > 0:
            (keys,) = self._page([self.key], partition, after, min(skip, QUERY_WINDOW))
            self._check_page(keys, partition)
            after, skip = keys[-1], skip - len(keys)
        return after

    def _check_page(self, keys: np.ndarray, partition: str) -> None:
        if not len(keys):
            raise InputError(
                f"partition {partition!r} of {self.spec.collection!r} ran out of keys before its counted rows: "
                "it holds duplicate primary keys (count(*) counts every copy) or changed during the run",
                "upsert each duplicated key once, or stop writes to the source, then rerun",
            )

    def batches(self, start: int, stop: int, size: int) -> Iterator[Batch]:
        size = rows_per_message(self.columns, min(size, QUERY_WINDOW))
        for partition, first, rows in self.parts:
            position, end = max(start, first), min(stop, first + rows)
            after = self._seek(partition, position - first) if position < end else None
            while position < end:
                values = self._page(self.columns, partition, after, min(size, end - position))
                self._check_page(values[0], partition)
                scalars = {c.name: v for c, v in zip(self.columns[2:], values[2:], strict=True)}
                yield Batch(position, values[0], values[1], scalars, partition)
                position, after = position + len(values[0]), values[0][-1]

    def keys(self, start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        """Key-only pages of the query window, whatever ``size`` (keys are small)."""
        for partition, first, rows in self.parts:
            position, end = max(start, first), min(stop, first + rows)
            after = self._seek(partition, position - first) if position < end else None
            while position < end:
                (keys,) = self._page([self.key], partition, after, min(QUERY_WINDOW, end - position))
                self._check_page(keys, partition)
                yield keys
                position, after = position + len(keys), keys[-1]

    def rows_at(self, positions: np.ndarray) -> Iterator[Batch]:
        """Keys at the positions from a key-only scan, then those rows by key, partition by partition."""
        for partition, first, rows in self.parts:
            lo, hi = np.searchsorted(positions, [first, first + rows])
            wanted, keys, position = positions[lo:hi], [], first
            for page in self.keys(first, first + rows, QUERY_WINDOW) if len(wanted) else ():
                inside = wanted[(wanted >= position) & (wanted < position + len(page))]
                keys.extend(page[inside - position].tolist())
                position += len(page)
                if position > wanted[-1]:
                    break
            step = rows_per_message(self.columns, LOOKUP_KEYS)
            for chunk in range(0, len(keys), step):
                listed = ", ".join(map(literal, keys[chunk : chunk + step]))
                values = self.milvus.query(self.collection, f"{self.key.name} in [{listed}]", self.columns, [partition])
                yield Batch(
                    first,
                    values[0],
                    values[1],
                    {c.name: v for c, v in zip(self.columns[2:], values[2:], strict=True)},
                    partition,
                )

    def close(self) -> None:
        if self._milvus is not None:
            self._milvus.close()
            self._milvus = None
