"""HDF5 files in MilvusDM's layout (``embeddings`` + ``ids``) or ann-benchmarks' (``train``).

Files exported by milvusdm carry their collection's schema (see ``layout``): read back, they
recreate it — key, fields, partitions, indexes — unless the manifest maps ``fields`` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import h5py
import numpy as np
from pymilvus import DataType

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.indexes import DISTANCE_METRICS
from milvusdm.layout import (
    DISTANCE_ATTRIBUTE,
    IDS,
    VECTOR_DEFAULTS,
    from_file,
    read_schema,
    vector_kind,
    vector_rows,
)
from milvusdm.schema import Column, Schema
from milvusdm.sources.base import Source, as_keys, check_unique_ids, content_signature, expand, readable
from milvusdm.spec import Hdf5Source as Hdf5Spec
from milvusdm.spec import S3Settings
from milvusdm.storage import ObjectStore, is_s3

SCAN_ROWS = 1 << 20
CHUNK_CACHE_SLOTS, CHUNK_CACHE_W0 = 521, 0.75  # HDF5's defaults


@dataclass
class Hdf5File:
    """One open file and the datasets taken from it."""

    path: str
    handle: h5py.File
    vectors: h5py.Dataset
    ids: h5py.Dataset | None
    fields: dict[str, h5py.Dataset]
    stored: Schema | None  # the schema of a milvusdm export
    kind: tuple[DataType, int]  # (vector type, dimension) as the dataset's layout says
    offset: int = 0

    @property
    def rows(self) -> int:
        return cast(int, self.vectors.shape[0])

    @property
    def partitions(self) -> tuple[tuple[str | None, int], ...]:
        """(partition, rows) in file order; a file without partitions is one run of rows."""
        return self.stored.partitions if self.stored and self.stored.partitions else ((None, self.rows),)


class Hdf5Source(Source):
    def __init__(self, spec: Hdf5Spec, s3: S3Settings | None = None) -> None:
        self.spec = spec
        self.files: list[Hdf5File] = []
        self.store = ObjectStore(s3) if any(is_s3(p) for p in spec.patterns) else None

    def describe(self) -> str:
        return f"hdf5:{','.join(self.spec.patterns)}"

    def open(self) -> None:
        offset = 0
        for path in expand(self.spec.patterns, self.store, "HDF5", "source.hdf5"):
            file = self._open_file(path)
            file.offset = offset
            offset += file.rows
            self.files.append(file)
        self._check_consistent()
        first = self.files[0]
        self.total = offset
        if first.stored is not None:
            partitions = tuple((p, rows) for file in self.files if file.stored for p, rows in file.stored.partitions)
            self.schema = replace(first.stored, partitions=partitions)
        else:
            vector_type, dim = first.kind
            binary = vector_type == DataType.BINARY_VECTOR
            self.schema = Schema(
                dim=dim,
                vector_type=vector_type,
                scalars=tuple(Column.for_numpy(name, ds.dtype) for name, ds in first.fields.items()),
                metric=self._metric(first) or ("HAMMING" if binary else None),
            )
        if first.ids is not None:
            check_unique_ids(self._all_ids(), f"source {self.describe()}")

    def _open_file(self, path: str) -> Hdf5File:
        try:
            handle = h5py.File(readable(path, self.store), "r")
        except OSError as error:
            raise InputError(
                f"{path} is not a readable HDF5 file ({error})", "check that the file is HDF5 and was copied whole"
            ) from None
        vectors = self._dataset(handle, path, self.spec.vectors, VECTOR_DEFAULTS, "vectors")
        kind = vector_kind(vectors)
        if kind is None and handle.attrs.get("type") in ("sparse", b"sparse"):
            raise InputError(
                f"{path} is a sparse ann-benchmarks dataset (sets of item ids, not vectors of one dimension)",
                "convert it to dense binary vectors (one bit per item) first; Milvus 2.3 stores no sparse vectors",
            )
        if kind is None:
            raise InputError(
                f"dataset {vectors.name!r} in {path} has shape {vectors.shape} of {vectors.dtype}, not (rows, dimension) "
                "numbers nor 1-D fixed-length bytes (binary vectors)",
                "point source.hdf5.vectors at a 2-D dataset of vectors",
            )
        stored = read_schema(handle) if not self.spec.fields and not self.spec.ids and not self.spec.vectors else None
        id_name = self.spec.ids or (IDS if IDS in handle else None)
        ids = self._dataset(handle, path, id_name, (), "ids") if id_name else None
        if ids is not None:
            self._check_column(ids, vectors, path)
            if ids.dtype.kind not in "iu" and not (stored and stored.key and h5py.check_string_dtype(ids.dtype)):
                raise InputError(
                    f"ids dataset {ids.name!r} in {path} holds {ids.dtype}, not integers",
                    "store ids as integers, or leave source.hdf5.ids unset to number rows 0..N-1",
                )
        mapping = {c.name: c.name for c in stored.scalars} if stored else self.spec.fields
        fields = {}
        for dataset_name, field_name in mapping.items():
            dataset = self._dataset(handle, path, dataset_name, (), f"field {field_name}")
            self._check_column(dataset, vectors, path)
            fields[field_name] = dataset
        return Hdf5File(path, handle, vectors, ids, fields, stored, kind)

    @staticmethod
    def _dataset(handle: h5py.File, path: str, name: str | None, defaults: tuple[str, ...], role: str) -> h5py.Dataset:
        candidates = [name] if name else [d for d in defaults if d in handle]
        found = handle.get(candidates[0]) if candidates else None
        if isinstance(found, h5py.Dataset):
            where, cache = found.name.encode(), _chunk_cache_bytes(found)
            del found  # HDF5 sizes a dataset's chunk cache when it opens it: closed, then opened with ours
            access = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
            access.set_chunk_cache(CHUNK_CACHE_SLOTS, cache, CHUNK_CACHE_W0)
            return h5py.Dataset(h5py.h5d.open(handle.id, where, access))
        present = sorted(k for k, v in handle.items() if isinstance(v, h5py.Dataset))
        wanted = name or " or ".join(defaults)
        raise InputError(
            f"{path} has no dataset {wanted!r} for {role} (datasets: {', '.join(present) or 'none'})",
            f"set source.hdf5.{'vectors' if role == 'vectors' else 'ids' if role == 'ids' else 'fields'} "
            "to one of the datasets listed",
        )

    @staticmethod
    def _check_column(dataset: h5py.Dataset, vectors: h5py.Dataset, path: str) -> None:
        if dataset.ndim != 1 or dataset.shape[0] != vectors.shape[0]:
            raise InputError(
                f"dataset {dataset.name!r} in {path} has shape {dataset.shape}, "
                f"but {vectors.name!r} has {vectors.shape[0]} rows",
                "give every column one value per vector",
            )

    def _check_consistent(self) -> None:
        first = self.files[0]
        for file in self.files[1:]:
            if file.kind != first.kind:
                (kind, dim), (first_kind, first_dim) = file.kind, first.kind
                raise InputError(
                    f"{file.path} holds {kind.name} of dimension {dim}, {first.path} {first_kind.name} of {first_dim}",
                    "migrate files of one vector type and dimension together",
                )
            if (file.ids is None) != (first.ids is None):
                raise InputError(
                    f"{file.path} and {first.path} disagree on having an ids dataset",
                    "give every file ids, or none (then rows are numbered 0..N-1)",
                )
            if (file.stored is None) != (first.stored is None):
                raise InputError(
                    f"{file.path} and {first.path} are not both milvusdm exports", "import them separately"
                )
            if (
                file.stored
                and first.stored
                and replace(file.stored, partitions=()) != replace(first.stored, partitions=())
            ):
                raise InputError(
                    f"{file.path} holds another collection schema than {first.path}", "import one collection at a time"
                )
            for name, dataset in file.fields.items():
                if Column.for_numpy(name, dataset.dtype) != Column.for_numpy(name, first.fields[name].dtype):
                    raise InputError(f"field {name!r} has another type in {file.path} than in {first.path}", "")

    @staticmethod
    def _metric(file: Hdf5File) -> str | None:
        """The metric an ann-benchmarks file names; one it names that milvusdm does not know is
        refused (a silent L2 would build a collection that answers searches wrongly)."""
        distance = file.handle.attrs.get(DISTANCE_ATTRIBUTE)
        if distance is None:
            return None
        name = (distance.decode() if isinstance(distance, bytes) else str(distance)).lower()
        if name not in DISTANCE_METRICS:
            raise InputError(
                f"{file.path} names the distance {name!r}, which milvusdm does not know "
                f"(known: {', '.join(sorted(DISTANCE_METRICS))})",
                "set the file's 'distance' attribute to one of those",
            )
        return DISTANCE_METRICS[name]

    def _all_ids(self) -> Iterator[np.ndarray]:
        for file in self.files:
            for lo in range(0, file.rows, SCAN_ROWS):
                chunk = self._ids(file, lo, lo + SCAN_ROWS)
                if chunk.dtype == np.uint64 and chunk.size and chunk.max() > np.iinfo(np.int64).max:
                    raise InputError(f"{file.path} has ids above 2**63-1", "Milvus ids are signed 64-bit integers")
                yield chunk

    def batches(self, start: int, stop: int, size: int) -> Iterator[Batch]:
        """Batches never straddle files or partitions."""
        for file in self.files:
            first = file.offset
            for partition, rows in file.partitions:
                lo, hi = max(start, first), min(stop, first + rows)
                for begin in range(lo, hi, size):
                    yield self._read(file, begin, min(begin + size, hi), partition)
                first += rows

    def keys(self, start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        """Only the ids datasets are read (or the row numbers made up)."""
        for file in self.files:
            lo, hi = max(start, file.offset), min(stop, file.offset + file.rows)
            for begin in range(lo, hi, size):
                end = min(begin + size, hi)
                if file.ids is None:
                    yield np.arange(begin, end, dtype=np.int64)
                else:
                    yield as_keys(self._ids(file, begin - file.offset, end - file.offset))

    def identities(self) -> set[str]:
        return {f"file:{Path(file.path).resolve()}" for file in self.files if not is_s3(file.path)}

    def signature(self) -> str:
        return content_signature([file.path for file in self.files if not is_s3(file.path)])

    def _ids(self, file: Hdf5File, a: int, b: int) -> np.ndarray:
        assert file.ids is not None  # callers read ids only from files that have them
        if file.stored and file.stored.key:
            return _read_column(file.ids, a, b, file.stored.key)
        return cast(np.ndarray, file.ids[a:b])

    def _read(self, file: Hdf5File, begin: int, end: int, partition: str | None) -> Batch:
        a, b = begin - file.offset, end - file.offset
        columns = {c.name: c for c in self.schema.scalars}
        try:
            ids = self._ids(file, a, b) if file.ids is not None else np.arange(begin, end, dtype=np.int64)
            scalars = {name: _read_column(ds, a, b, columns[name]) for name, ds in file.fields.items()}
            return Batch(begin, ids, vector_rows(file.vectors[a:b]), scalars, partition)
        except OSError as error:
            raise InputError(
                f"cannot read rows {a}..{b - 1} of {file.path}: {error}",
                "the file is corrupt or truncated; copy it again",
            ) from None

    def close(self) -> None:
        for file in self.files:
            file.handle.close()
        self.files.clear()


def _chunk_cache_bytes(dataset: h5py.Dataset) -> int:
    """Room for one decoded chunk if the chunks are compressed (the chunk a batch boundary falls
    into is then decoded once, not twice), else none: HDF5 reads uncompressed chunks straight
    into the batch. HDF5 evicts only when its cache is full, so a cache sized for any file (it was
    64 MB) kept every chunk read up to that size: +64 MB at 250k x 128 rows of a dump's file."""
    if dataset.chunks is None or not dataset.id.get_create_plist().get_nfilters():
        return 0
    return int(np.prod(dataset.chunks)) * int(dataset.dtype.itemsize)


def _read_column(dataset: h5py.Dataset, a: int, b: int, column: Column) -> np.ndarray:
    """Strings decode as UTF-8 whatever the dataset declares (fixed-length ``S`` data says ASCII)."""
    if h5py.check_string_dtype(dataset.dtype) is None:
        return cast(np.ndarray, dataset[a:b])
    try:
        return from_file(column, dataset.asstr("utf-8")[a:b])
    except UnicodeDecodeError:
        row = next(i for i, value in enumerate(dataset[a:b]) if not _is_utf8(value))
        raise InputError(
            f"dataset {dataset.name!r} in {dataset.file.filename}, row {a + row}, is not UTF-8 text",
            "store strings as UTF-8",
        ) from None


def _is_utf8(value: bytes | str) -> bool:
    try:
        value.decode("utf-8") if isinstance(value, bytes) else value
    except UnicodeDecodeError:
        return False
    return True
