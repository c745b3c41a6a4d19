"""A Milvus 0.10.x/1.x data directory: segment files read directly, no 1.x server needed.

Each live segment of a collection or partition is a folder ``db/tables/<table_id>/<segment_id>/``
with ``<segment_id>.rv`` (raw vectors), ``<segment_id>.uid`` (int64 ids) and, after deletes,
``deleted_docs`` (int32 row offsets, unsorted); each file begins with an 8-byte count of the
bytes that follow (Milvus 1.1's DefaultVectorsFormat / DefaultDeletedDocsFormat). Positions run
over live rows partition by partition, segment by segment; a batch reads just its window of the
files and drops the deleted offsets in it, so memory is O(batch) plus the deleted offsets.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pymilvus import DataType

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.milvus1x_meta import Collection, Segment, choose, read_mysql, read_sqlite
from milvusdm.schema import Schema
from milvusdm.sources.base import Source, check_unique_ids
from milvusdm.spec import Milvus1xSource as Milvus1xSpec
from milvusdm.spec import S3Settings
from milvusdm.storage import ObjectStore, is_s3

log = logging.getLogger(__name__)
HEADER = 8  # bytes: the size_t byte count each segment file starts with
SCAN_ROWS = 1 << 20
META_FILE = "db/meta.sqlite"


class _Directory:
    """Files under the data directory, local or behind an s3:// prefix: sizes and byte ranges."""

    def __init__(self, root: str, store: ObjectStore | None) -> None:
        self.root, self.store = root.rstrip("/"), store

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def size(self, relative: str) -> int | None:
        """Bytes in the file, None if it does not exist."""
        path = self.path(relative)
        if self.store is not None:
            return self.store.size(path) if self.store.exists(path) else None
        return Path(path).stat().st_size if Path(path).is_file() else None

    def read(self, relative: str, offset: int, count: int, dtype: npt.DTypeLike) -> np.ndarray:
        """``count`` values of ``dtype`` at byte ``offset``; a short read names the file."""
        path, nbytes = self.path(relative), count * np.dtype(dtype).itemsize
        if count == 0:
            return np.empty(0, dtype=dtype)
        if self.store is None:
            values = np.fromfile(path, dtype=dtype, count=count, offset=offset)
        else:
            bucket, key = path[len("s3://") :].split("/", 1)
            response = self.store.call(
                "read",
                path,
                self.store.client.get_object,
                Bucket=bucket,
                Key=key,
                Range=f"bytes={offset}-{offset + nbytes - 1}",
            )
            values = np.frombuffer(response["Body"].read(), dtype=dtype)
        if values.size != count:
            raise InputError(
                f"segment file {path} is truncated (ends before byte {offset + nbytes})",
                "copy the 1.x data directory again, whole",
            )
        return values


def _local_meta(location: str, store: ObjectStore | None, folder: str) -> Path:
    """The SQLite meta file as a local path: an s3:// object (and its -wal) is downloaded first."""
    if not is_s3(location):
        return Path(location)
    assert store is not None  # made for any s3:// path of the source
    target = Path(folder) / "meta.sqlite"
    if store.exists(location):
        store.download(location, target)
        if store.exists(location + "-wal"):
            store.download(location + "-wal", Path(f"{target}-wal"))
    return target


@dataclass(frozen=True)
class _SegmentFiles:
    """One live segment, checked against the metadata: where its rows start among the source's."""

    partition: str
    segment: Segment
    raw_rows: int
    deleted: np.ndarray  # sorted unique raw offsets of rows not read: deleted ones (and dropped repeats)
    rows: int  # live rows read
    start: int = 0

    @property
    def folder(self) -> str:
        return f"db/tables/{self.segment.folder}/{self.segment.segment_id}"

    def file(self, suffix: str) -> str:
        return f"{self.folder}/{self.segment.segment_id}{suffix}"

    def raw_offset(self, live: int) -> int:
        """The raw row holding live row ``live`` of the segment."""
        shifted = self.deleted - np.arange(len(self.deleted))  # live rows before each deleted one
        return live + int(np.searchsorted(shifted, live, side="right"))


class Milvus1xSource(Source):
    def __init__(self, spec: Milvus1xSpec, s3: S3Settings | None = None) -> None:
        self.spec = spec
        sqlite = spec.meta.sqlite if spec.meta is not None else None
        remote = is_s3(spec.path) or (sqlite is not None and is_s3(sqlite))
        self.store = ObjectStore(s3) if remote else None
        self.files = _Directory(spec.path, self.store if is_s3(spec.path) else None)
        self.segments: list[_SegmentFiles] = []

    def describe(self) -> str:
        return f"milvus1x:{self.spec.path}/{self.spec.collection}"

    def open(self) -> None:
        assert self.spec.collection is not None, "a reader copies one collection (instance plans many)"
        ((collection, partitions),) = choose(
            self.collections(),
            [(self.spec.collection, self.spec.partitions)],
            self.spec.path,
            "source.milvus1x.collection and partitions",
        )
        self.vector_bytes = collection.dimension // 8 if collection.binary else collection.dimension * 4
        self.vector_dtype = np.dtype(np.uint8 if collection.binary else np.float32)
        plans = [self._check_segment(p.name, segment) for p in partitions for segment in p.segments]
        if self.spec.duplicates == "keepFirst":
            plans = self._keep_first(plans)
        start, rows, self.segments = 0, dict.fromkeys((p.name for p in partitions), 0), []
        for plan in plans:
            self.segments.append(replace(plan, start=start))
            start += plan.rows
            rows[plan.partition] += plan.rows
        self.total = start
        self.schema = Schema(
            dim=collection.dimension,
            vector_type=DataType.BINARY_VECTOR if collection.binary else DataType.FLOAT_VECTOR,
            metric=collection.metric,
            name=collection.name,
            partitions=tuple(rows.items()),
        )
        check_unique_ids(
            self._all_ids(),
            f"collection {collection.name!r} of {self.spec.path}",
            "set source.milvus1x.duplicates: keepFirst to keep each id's first copy (Milvus would store every copy)",
        )

    def collections(self) -> dict[str, Collection]:
        """The directory's live collections, from its meta database."""
        meta = self.spec.meta
        if meta is not None and meta.mysql is not None:
            if self.files.store is None and not Path(self.spec.path, "db", "tables").is_dir():
                raise InputError(
                    f"{self.spec.path} is not a Milvus 1.x data directory (no db/tables/ folder)",
                    "point source.milvus1x.path at the 1.x server's storage.path",
                )
            mysql = meta.mysql
            return read_mysql(mysql.host, mysql.port, mysql.user, mysql.secret(), mysql.database)
        if self.files.store is None and meta is None and not Path(self.spec.path, "db").is_dir():
            raise InputError(
                f"{self.spec.path} is not a Milvus 1.x data directory (no db/ folder)",
                "point source.milvus1x.path at the 1.x server's storage.path",
            )
        location = meta.sqlite if meta is not None and meta.sqlite else self.files.path(META_FILE)
        with tempfile.TemporaryDirectory(prefix="milvusdm-meta-") as folder:
            return read_sqlite(_local_meta(location, self.store, folder), location)

    def _check_segment(self, partition: str, segment: Segment) -> _SegmentFiles:
        """Sizes and headers of a segment's files against each other and the metadata."""
        plan = _SegmentFiles(partition, segment, 0, np.empty(0, dtype=np.int64), 0)
        rv = self._payload(plan.file(".rv"))
        raw_rows, extra = divmod(rv, self.vector_bytes)
        if extra:
            raise InputError(
                f"{self.files.path(plan.file('.rv'))} holds {rv} bytes of vectors, not a whole number of "
                f"{self.vector_bytes}-byte rows",
                "check the collection's dimension in the meta database",
            )
        uid = self._payload(plan.file(".uid"))
        if uid != raw_rows * 8:
            raise InputError(
                f"{self.files.path(plan.file('.uid'))} holds {uid // 8} ids for {raw_rows} vectors",
                "copy the segment again, whole",
            )
        deleted = self._deleted(plan, raw_rows)
        if raw_rows - len(deleted) != segment.rows:
            raise InputError(
                f"{self.files.path(plan.file('.rv'))} holds {raw_rows} rows ({len(deleted)} deleted), but the metadata "
                f"says segment {segment.segment_id} has {segment.rows} live rows",
                "copy the data directory and its meta database from the same moment (stop the 1.x server first)",
            )
        return _SegmentFiles(partition, segment, raw_rows, deleted, segment.rows)

    def _keep_first(self, plans: list[_SegmentFiles]) -> list[_SegmentFiles]:
        """Drop every copy of an id after its first (in partition, segment, row order), as if
        deleted. Holds ~28 bytes per row while it looks (ids, owners, offsets, their order)."""
        ids, owners, offsets = [], [], []
        for number, plan in enumerate(plans):
            ids.append(self._rows(plan, 0, plan.rows, with_vectors=False)[0] if plan.rows else np.empty(0, np.int64))
            owners.append(np.full(plan.rows, number, dtype=np.int32))
            offsets.append(np.setdiff1d(np.arange(plan.raw_rows), plan.deleted, assume_unique=True))
        every = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
        order = np.argsort(every, kind="stable")
        repeats = order[np.flatnonzero(every[order][1:] == every[order][:-1]) + 1]
        if not repeats.size:
            return plans
        log.warning(
            "kept the first copy of %d duplicated id(s) of %r, dropping %d later copies",
            np.unique(every[repeats]).size,
            self.spec.collection,
            repeats.size,
        )
        owner, offset = np.concatenate(owners)[repeats], np.concatenate(offsets)[repeats]
        kept = []
        for number, plan in enumerate(plans):
            dropped = offset[owner == number]
            kept.append(
                replace(plan, deleted=np.union1d(plan.deleted, dropped), rows=plan.rows - dropped.size)
                if dropped.size
                else plan
            )
        return kept

    def _payload(self, relative: str) -> int:
        """Bytes after the header, checked against the header."""
        size = self.files.size(relative)
        if size is None:
            raise InputError(
                f"segment file {self.files.path(relative)} is missing",
                "copy the whole 1.x data directory (db/tables/ with every segment folder)",
            )
        if size < HEADER or int(self.files.read(relative, 0, 1, np.uint64)[0]) != size - HEADER:
            raise InputError(
                f"segment file {self.files.path(relative)} is truncated ({size} bytes; its header disagrees)",
                "copy the 1.x data directory again, whole",
            )
        return size - HEADER

    def _deleted(self, plan: _SegmentFiles, raw_rows: int) -> np.ndarray:
        relative = f"{plan.folder}/deleted_docs"
        if self.files.size(relative) is None:
            return np.empty(0, dtype=np.int64)
        offsets = self.files.read(relative, HEADER, self._payload(relative) // 4, np.int32)
        deleted = np.unique(offsets).astype(np.int64)
        if deleted.size and (deleted[0] < 0 or deleted[-1] >= raw_rows):
            raise InputError(
                f"{self.files.path(relative)} deletes rows outside the segment's {raw_rows}",
                "copy the segment again, whole",
            )
        return deleted

    def _rows(self, plan: _SegmentFiles, a: int, b: int, with_vectors: bool) -> tuple[np.ndarray, np.ndarray]:
        """Ids and vectors (no columns unless ``with_vectors``) of live rows a..b-1 of a segment,
        reading only their window."""
        lo, hi = plan.raw_offset(a), plan.raw_offset(b - 1) + 1
        ids = self.files.read(plan.file(".uid"), HEADER + 8 * lo, hi - lo, np.int64)
        width = self.vector_bytes // self.vector_dtype.itemsize if with_vectors else 0
        flat = self.files.read(plan.file(".rv"), HEADER + self.vector_bytes * lo, (hi - lo) * width, self.vector_dtype)
        vectors = flat.reshape(hi - lo, width)
        window = plan.deleted[np.searchsorted(plan.deleted, lo) : np.searchsorted(plan.deleted, hi)]
        if window.size:
            keep = np.ones(hi - lo, dtype=bool)
            keep[window - lo] = False
            ids, vectors = ids[keep], vectors[keep]
        return ids, vectors

    def _all_ids(self) -> Iterator[np.ndarray]:
        for plan in self.segments:
            for a in range(0, plan.rows, SCAN_ROWS):
                yield self._rows(plan, a, min(a + SCAN_ROWS, plan.rows), with_vectors=False)[0]

    def _windows(self, start: int, stop: int, size: int) -> Iterator[tuple[_SegmentFiles, int, int]]:
        """(segment, first, end) positions of each batch: batches never straddle segments (nor, so, partitions)."""
        for plan in self.segments:
            lo, hi = max(start, plan.start), min(stop, plan.start + plan.rows)
            for begin in range(lo, hi, size):
                yield plan, begin, min(begin + size, hi)

    def batches(self, start: int, stop: int, size: int) -> Iterator[Batch]:
        for plan, begin, end in self._windows(start, stop, size):
            ids, vectors = self._rows(plan, begin - plan.start, end - plan.start, with_vectors=True)
            yield Batch(begin, ids, vectors, partition=plan.partition)

    def keys(self, start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        """The ids alone, from the .uid files."""
        for plan, begin, end in self._windows(start, stop, size):
            yield self._rows(plan, begin - plan.start, end - plan.start, with_vectors=False)[0]
