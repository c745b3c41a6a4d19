"""Parquet files: milvusdm exports and Milvus' bulk-import layout, VectorDBBench's (``id``,
``emb``), Pinecone's (``id``, ``values``, ``metadata``), or any table with one vector column.

Files are read row group by row group into numpy, through a small read buffer, so a row group
larger than memory streams in slices and memory stays O(read buffer + batch). A file exported by
milvusdm carries its collection's schema (see ``arrow``): read back, it recreates it — key,
fields, partitions, indexes — unless the manifest picks columns itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pymilvus import DataType

from milvusdm.arrow import columns, from_arrow, infer, stored_schema, vector_kind
from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.indexes import DISTANCE_METRICS
from milvusdm.schema import DYNAMIC_FIELD, VARCHAR_MAX_LENGTH, Column, Schema
from milvusdm.sources.base import Source, expand, readable, refuse_sentinel_key
from milvusdm.spec import ParquetSource as ParquetSpec
from milvusdm.spec import S3Settings
from milvusdm.storage import ObjectStore, RangeReader, is_s3

log = logging.getLogger(__name__)
ID_DEFAULTS = ("id", "pk")
PINECONE = {"id", "values", "sparse_values", "metadata"}  # metadata becomes the dynamic field
READ_BUFFER = 4 << 20  # column chunks are read through this many bytes at a time
SAMPLE_PASS_ROWS = 10_000  # rows per batch of the pass that picks a verification sample
METRIC_KEYS = (b"distance", b"metric", b"metric_type")


def open_parquet(source: str | Path | RangeReader, path: str) -> pq.ParquetFile:
    """A Parquet file read through a small buffer (pre-buffering would hold whole row groups)."""
    try:
        return pq.ParquetFile(source, buffer_size=READ_BUFFER, pre_buffer=False)
    except (pa.ArrowException, OSError) as error:
        raise InputError(
            f"{path} is not a readable Parquet file ({error})", "check that the file is Parquet and was copied whole"
        ) from None


@dataclass
class ParquetPart:
    """One open file; ``offset`` is the source position of its row 0."""

    path: str
    file: pq.ParquetFile
    stored: Schema | None  # the schema of a milvusdm export
    offset: int = 0

    @property
    def rows(self) -> int:
        return cast(int, self.file.metadata.num_rows)

    @cached_property
    def starts(self) -> np.ndarray:
        """Row of each row group's first row, and the file's row count last."""
        groups = self.file.metadata
        return np.cumsum([0] + [groups.row_group(i).num_rows for i in range(groups.num_row_groups)])

    @property
    def partitions(self) -> tuple[tuple[str | None, int], ...]:
        return self.stored.partitions if self.stored and self.stored.partitions else ((None, self.rows),)

    def read(self, names: list[str], a: int, b: int, size: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """Rows a..b-1 of these columns as (row, record batch) of at most ``size`` rows."""
        first = int(np.searchsorted(self.starts, a, side="right")) - 1
        last = int(np.searchsorted(self.starts, b, side="left"))
        position = int(self.starts[first])
        # One decoding thread: the reader runs beside the writers anyway, and every thread's
        # allocator heap keeps its pages (measured 16 MB lower peak memory at 1M x 128).
        groups = range(first, last)
        for record in self.file.iter_batches(batch_size=size, row_groups=groups, columns=names, use_threads=False):
            lo, hi = max(a, position), min(b, position + record.num_rows)
            if lo < hi:
                yield lo, record.slice(lo - position, hi - lo)
            position += record.num_rows
            if position >= b:
                return


class ParquetSource(Source):
    vector: Column  # set by ``open``

    def __init__(self, spec: ParquetSpec, s3: S3Settings | None = None) -> None:
        self.spec = spec
        self.parts: list[ParquetPart] = []
        self.store = ObjectStore(s3) if any(is_s3(p) for p in spec.patterns) else None
        self.fields: dict[str, Column] = {}  # file column -> the scalar field it becomes
        self.key: str | None = None  # the id column; None: rows are numbered

    def describe(self) -> str:
        return f"parquet:{','.join(self.spec.patterns)}"

    @property
    def _picked(self) -> bool:
        return bool(self.spec.vectors or self.spec.ids or self.spec.fields is not None)

    def open(self) -> None:
        offset = 0
        for path in expand(self.spec.patterns, self.store, "Parquet", "source.parquet"):
            file = open_parquet(readable(path, self.store), path)
            part = ParquetPart(path, file, None if self._picked else stored_schema(file.schema_arrow.metadata), offset)
            offset += part.rows
            self.parts.append(part)
        self.total = offset
        first = self.parts[0]
        self.schema = self._exported(first.stored) if first.stored else self._inferred(first)
        for part in self.parts:
            self._check_like(part, first)
        if self.key is not None:
            self._check_keys(self.key)
            pa.default_memory_pool().release_unused()  # the sorted ids' pages, before the copy (~26 MB at 1M)

    def _exported(self, stored: Schema) -> Schema:
        layout = columns(stored)
        self.key, vector, *others = layout
        self.vector, self.fields = layout[vector], {name: layout[name] for name in others}
        # a plain file among exports has none: _check_like, next, names it
        partitions = tuple(p for part in self.parts if part.stored for p in part.stored.partitions)
        return replace(stored, partitions=partitions)

    def _inferred(self, first: ParquetPart) -> Schema:
        arrow, spec, path = first.file.schema_arrow, self.spec, first.path
        names = arrow.names
        pinecone = not spec.vectors and {"id", "values"} <= set(names) and set(names) <= PINECONE
        vector = spec.vectors or ("values" if pinecone else self._only_vector(arrow, path))
        kind = vector_kind(self._type(arrow, vector, path, "vectors"))
        if kind is None:
            raise InputError(
                f"column {vector!r} of {path} holds {arrow.field(vector).type}, not vectors",
                "point source.parquet.vectors at a list column of floats or a fixed-size binary column",
            )
        dim = self._dim(first, vector, kind)
        self.vector = Column(vector, kind, dim=dim)
        self.key = spec.ids or next((n for n in ID_DEFAULTS if n in names), None)
        key_type = self._type(arrow, self.key, path, "ids") if self.key else None
        others = spec.fields if spec.fields is not None else [n for n in names if n not in (vector, self.key)]
        if pinecone and "sparse_values" in others:
            log.warning("%s: sparse_values are not copied (Milvus 2.3 has no sparse vectors)", path)
            others = [n for n in others if n != "sparse_values"]
        for name in others:
            dynamic = name == DYNAMIC_FIELD or (pinecone and name == "metadata")
            self._type(arrow, name, path, "fields")
            self.fields[name] = Column(DYNAMIC_FIELD, DataType.JSON) if dynamic else infer(name, arrow.field(name).type)
        if key_type is not None and not (
            pa.types.is_integer(key_type) or pa.types.is_string(key_type) or pa.types.is_large_string(key_type)
        ):
            raise InputError(
                f"id column {self.key!r} of {path} holds {key_type}, not integers or strings",
                "point source.parquet.ids at an integer or string column, or leave it unset",
            )
        text_key = key_type is not None and not pa.types.is_integer(key_type)
        return Schema(
            dim=dim,
            vector_type=kind,
            scalars=tuple(self.fields.values()),
            metric=self._metric(arrow),
            key=Column(self.key, DataType.VARCHAR, VARCHAR_MAX_LENGTH) if text_key and self.key else None,
        )

    @staticmethod
    def _type(arrow: pa.Schema, name: str, path: str, setting: str) -> pa.DataType:
        if name not in arrow.names:
            fix = (
                "migrate files of one layout together"
                if setting == "paths"
                else f"set source.parquet.{setting} to columns listed"
            )
            raise InputError(f"{path} has no column {name!r} (columns: {', '.join(arrow.names)})", fix)
        return arrow.field(name).type

    @staticmethod
    def _only_vector(arrow: pa.Schema, path: str) -> str:
        candidates: list[str] = [f.name for f in arrow if vector_kind(f.type) is not None]
        if len(candidates) != 1:
            found = (
                f"columns {', '.join(candidates)} could be"
                if candidates
                else "no column (list of floats or fixed-size binary) holds"
            )
            raise InputError(f"{path}: {found} the vectors", "set source.parquet.vectors to the vector column")
        return candidates[0]

    @staticmethod
    def _dim(part: ParquetPart, name: str, kind: DataType) -> int:
        field_type = part.file.schema_arrow.field(name).type
        if kind == DataType.BINARY_VECTOR:
            return cast(int, field_type.byte_width * 8)
        if pa.types.is_fixed_size_list(field_type):
            return cast(int, field_type.list_size)
        for _, record in part.read([name], 0, part.rows, 1):
            return int(pc.list_value_length(record.column(0))[0].as_py() or 0)
        raise InputError(
            f"{part.path} holds no rows, so the vectors' dimension is unknown",
            "give a fixed-size list column, or a file with rows",
        )

    @staticmethod
    def _metric(arrow: pa.Schema) -> str | None:
        metadata = arrow.metadata or {}
        value = next((metadata[k] for k in METRIC_KEYS if k in metadata), None)
        return DISTANCE_METRICS.get(value.decode().lower()) if value else None

    def _check_like(self, part: ParquetPart, first: ParquetPart) -> None:
        if (part.stored is None) != (first.stored is None):
            raise InputError(f"{part.path} and {first.path} are not both milvusdm exports", "import them separately")
        if part.stored and first.stored and replace(part.stored, partitions=()) != replace(first.stored, partitions=()):
            raise InputError(
                f"{part.path} holds another collection schema than {first.path}", "import one collection at a time"
            )
        arrow, expected = part.file.schema_arrow, first.file.schema_arrow
        for name in filter(None, [self.key, self.vector.name, *self.fields]):
            found = self._type(arrow, name, part.path, "paths")
            if found != expected.field(name).type:
                raise InputError(
                    f"column {name!r} holds {found} in {part.path} but {expected.field(name).type} in {first.path}",
                    "migrate files of one layout together",
                )
        self._check_vector_nulls(part)

    def _check_vector_nulls(self, part: ParquetPart) -> None:
        """Nulls in the vector column, from the row groups' statistics (no data read)."""
        metadata = part.file.metadata
        leaves = [
            j for j in range(metadata.num_columns) if metadata.schema.column(j).path.split(".")[0] == self.vector.name
        ]
        for group in range(metadata.num_row_groups):
            for j in leaves:
                stats = metadata.row_group(group).column(j).statistics
                if stats is not None and stats.has_null_count and stats.null_count:
                    raise InputError(
                        f"column {self.vector.name!r} of {part.path} holds null vectors or values (row group {group})",
                        "drop those rows or fill them in",
                    )

    def _check_keys(self, key: str) -> None:
        """Nulls, range and uniqueness of the ids in column ``key``, before anything is written (the
        id column alone, in Arrow memory: 8 bytes a row for integers)."""
        chunks = [record.column(0) for part in self.parts for _, record in part.read([key], 0, part.rows, 1 << 20)]
        ids = pa.chunked_array(chunks, type=chunks[0].type if chunks else pa.int64())
        where = f"source {self.describe()}"
        if ids.null_count:
            raise InputError(f"id column {key!r} of {where} holds {ids.null_count} null(s)", "give every row an id")
        if pa.types.is_uint64(ids.type) and len(ids) and pc.max(ids).as_py() > np.iinfo(np.int64).max:
            raise InputError(f"{where} has ids above 2**63-1", "Milvus ids are signed 64-bit integers")
        text = pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)
        for chunk in chunks if not text else ():
            refuse_sentinel_key(chunk.to_numpy(zero_copy_only=False), where)
        if text and len(ids) and pc.max(pc.binary_length(ids)).as_py() > VARCHAR_MAX_LENGTH:
            raise InputError(f"{where} has ids longer than {VARCHAR_MAX_LENGTH} bytes", "shorten the ids")
        ordered = ids.take(pc.sort_indices(ids))  # sorting holds two copies of the ids; a hash set held ~14 times more
        repeated = ordered[1:].filter(pc.equal(ordered[1:], ordered[:-1]))
        if len(repeated):
            raise InputError(
                f"{where} has {len(repeated)} duplicate id(s), e.g. {repeated[0].as_py()}",
                "make the ids unique; Milvus would store every copy",
            )

    def batches(self, start: int, stop: int, size: int) -> Iterator[Batch]:
        """Batches never straddle files or partitions."""
        names = [n for n in (self.key, self.vector.name) if n] + list(self.fields)
        for part in self.parts:
            first = part.offset
            for partition, rows in part.partitions:
                lo, hi = max(start, first), min(stop, first + rows)
                for row, record in part.read(names, lo - part.offset, hi - part.offset, size) if lo < hi else ():
                    yield self._batch(part, row, record, partition)
                first += rows

    def rows_at(self, positions: np.ndarray) -> Iterator[Batch]:
        """One pass over the rows from the first sampled to the last, keeping the sampled ones:
        Parquet cannot seek to a row inside a row group, so a read per row would decode its row
        group up to that row each time (minutes for a sample of 1M rows in one row group)."""
        if not len(positions):
            return
        for batch in self.batches(int(positions[0]), int(positions[-1]) + 1, SAMPLE_PASS_ROWS):
            lo, hi = np.searchsorted(positions, [batch.start, batch.stop])
            if lo < hi:
                keep = np.zeros(len(batch), dtype=bool)
                keep[positions[lo:hi] - batch.start] = True
                yield batch.where(keep)

    def _batch(self, part: ParquetPart, row: int, record: pa.RecordBatch, partition: str | None) -> Batch:
        begin = part.offset + row
        if self.key:
            key = self.schema.key or Column(self.key, DataType.INT64)
            ids = from_arrow(key, record.column(self.key), part.path, row)
        else:
            ids = np.arange(begin, begin + record.num_rows, dtype=np.int64)
        vectors = from_arrow(self.vector, record.column(self.vector.name), part.path, row)
        scalars = {c.name: from_arrow(c, record.column(name), part.path, row) for name, c in self.fields.items()}
        return Batch(begin, ids, vectors, scalars, partition)

    def close(self) -> None:
        for part in self.parts:
            part.file.close()
        self.parts.clear()
