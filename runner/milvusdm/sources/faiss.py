"""Faiss index files: flat, IDMap, IVF, HNSW, SQ/PQ-compressed and binary indexes.

Indexes are opened memory-mapped where Faiss supports it (flat codes, inverted lists), so
an index larger than RAM still migrates; batches are views of, or decoded from, its codes.
Compressed types yield the decoded approximations (the summary says so).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pymilvus import DataType

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.schema import Schema
from milvusdm.sources.base import Source, check_unique_ids, content_signature
from milvusdm.spec import FaissSource as FaissSpec
from milvusdm.spec import S3Settings
from milvusdm.storage import ObjectStore, is_s3

# Memory-map what Faiss can: inverted lists (IVF files, type code "Iw…"/"IBw…") or flat codes
# (everything else). The two flags together fail on IVF files.
IVF_FLAGS = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
FLAT_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
METRICS = {faiss.METRIC_L2: "L2", faiss.METRIC_INNER_PRODUCT: "IP"}
EXACT_FLAT = (faiss.IndexFlat, faiss.IndexBinaryFlat)
LOSSY_FLAT = (faiss.IndexScalarQuantizer, faiss.IndexPQ, faiss.IndexResidualQuantizer, faiss.IndexLocalSearchQuantizer)
SUPPORTED = (
    "IndexFlat(L2/IP), IndexIDMap(2), IndexIVFFlat, IndexHNSWFlat, IndexScalarQuantizer, IndexPQ, "
    "IndexIVFScalarQuantizer, IndexIVFPQ, IndexHNSWSQ/PQ, IndexBinaryFlat, IndexBinaryIVF, IndexBinaryHNSW, "
    "IndexBinaryIDMap"
)

# (start, stop) -> (ids or None for positions, vectors)
RowReader = Callable[[int, int], tuple[np.ndarray | None, np.ndarray]]
FaissIndex = Any  # SWIG proxies: faiss ships no usable types


class FaissSource(Source):
    def __init__(self, spec: FaissSpec, s3: S3Settings | None = None) -> None:
        self.spec = spec
        self.index: FaissIndex = None  # the loaded index; every view and downcast below depends on it
        self._read: RowReader | None = None
        self.store = ObjectStore(s3) if is_s3(spec.path) else None
        self.download: tempfile.TemporaryDirectory[str] | None = None

    def describe(self) -> str:
        return f"faiss:{self.spec.path}"

    def signature(self) -> str:
        return "" if self.store is not None else content_signature([self.spec.path])

    def _local_path(self) -> Path:
        """The index file; an s3:// object is downloaded to a temporary file (deleted at close)."""
        if self.store is None:
            return Path(self.spec.path)
        self.download = tempfile.TemporaryDirectory(prefix="milvusdm-faiss-")
        path = Path(self.download.name) / Path(self.spec.path).name
        self.store.download(self.spec.path, path)
        return path

    def open(self) -> None:
        path = self._local_path()
        if not path.is_file():
            raise InputError(f"Faiss index {path} does not exist", "check source.faiss.path, or mount the volume")
        with path.open("rb") as file:
            fourcc = file.read(4)
        binary = fourcc.startswith(b"IB")
        flags = IVF_FLAGS if fourcc[1 + binary : 2 + binary] == b"w" else FLAT_FLAGS
        try:
            read = faiss.read_index_binary if binary else faiss.read_index
            self.index = read(str(path), flags)
        except RuntimeError as error:
            detail = str(error).strip().splitlines()[-1][-160:]
            raise InputError(
                f"{self.spec.path} is not a readable Faiss index ({detail})",
                "pass a file written by faiss.write_index, copied whole",
            ) from None
        index = _downcast(self.index)
        self.total = index.ntotal
        self._read = self._reader(index)
        lossy = _is_lossy(index)
        self.schema = Schema(
            dim=index.d,  # bits, for binary indexes: what Milvus expects too
            vector_type=DataType.BINARY_VECTOR if binary else DataType.FLOAT_VECTOR,
            metric="HAMMING" if binary else METRICS.get(index.metric_type),
            lossy=lossy,
        )
        check_unique_ids(_stored_ids(index), f"index {self.spec.path}")

    def _reader(self, index: FaissIndex) -> RowReader:
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexBinaryIDMap)):
            id_map = faiss.rev_swig_ptr(index.id_map.data(), index.ntotal)
            inner = self._reader(_downcast(index.index))

            def mapped(start: int, stop: int) -> tuple[np.ndarray | None, np.ndarray]:
                ids, vectors = inner(start, stop)
                return id_map[ids if ids is not None else slice(start, stop)], vectors

            return mapped
        if isinstance(index, (faiss.IndexHNSW, faiss.IndexBinaryHNSW)):
            return self._reader(_downcast(index.storage))
        if isinstance(index, EXACT_FLAT):
            codes = _flat_codes(index)
            return lambda start, stop: (None, codes[start:stop])
        if isinstance(index, LOSSY_FLAT):
            return lambda start, stop: (None, index.reconstruct_n(start, stop - start))
        if _is_ivf(index):
            return _InvertedLists(index).read
        raise InputError(
            f"{self.spec.path} holds a {type(index).__name__}, which milvusdm cannot read",
            f"supported: {SUPPORTED}",
        )

    def batches(self, start: int, stop: int, size: int) -> Iterator[Batch]:
        for begin in range(start, stop, size):
            end = min(begin + size, stop)
            assert self._read is not None, "open() first"
            ids, vectors = self._read(begin, end)
            yield Batch(begin, np.arange(begin, end, dtype=np.int64) if ids is None else ids, vectors)

    def close(self) -> None:
        self._read = None
        self.index = None
        if self.download is not None:
            self.download.cleanup()
            self.download = None


def _stored_ids(index: FaissIndex) -> Iterator[np.ndarray]:
    """The user's ids, where the index keeps any (IDMap, IVF lists), without touching vectors."""
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexBinaryIDMap)):
        yield faiss.rev_swig_ptr(index.id_map.data(), index.ntotal)
    elif _is_ivf(index):
        lists = _InvertedLists(index)
        for list_no in range(index.nlist):
            yield lists.ids(list_no)


def _downcast(index: FaissIndex) -> FaissIndex:
    return faiss.downcast_IndexBinary(index) if isinstance(index, faiss.IndexBinary) else faiss.downcast_index(index)


def _is_ivf(index: FaissIndex) -> bool:
    return isinstance(index, (faiss.IndexIVF, faiss.IndexBinaryIVF))


def _is_lossy(index: FaissIndex) -> bool:
    if isinstance(index, faiss.IndexIDMap):
        return _is_lossy(_downcast(index.index))
    if isinstance(index, faiss.IndexHNSW):
        return _is_lossy(_downcast(index.storage))
    return isinstance(index, LOSSY_FLAT) or (
        isinstance(index, faiss.IndexIVF) and not isinstance(index, faiss.IndexIVFFlat)
    )


def _flat_codes(index: FaissIndex) -> np.ndarray:
    """A zero-copy (n, d) view of a flat index's stored vectors."""
    if isinstance(index, faiss.IndexBinaryFlat):
        raw = faiss.rev_swig_ptr(index.xb.data(), index.ntotal * index.code_size)  # type: ignore[attr-defined]  # SWIG
        return raw.reshape(index.ntotal, index.code_size)
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


class _InvertedLists:
    """Rows of an IVF index in list order: ids from the lists, vectors from their codes.

    Walking the lists needs no direct map (which ``add_with_ids`` indexes cannot build).
    Raw codes (IVFFlat, binary IVF) are viewed as they are; others are decoded in batches.
    """

    def __init__(self, index: FaissIndex) -> None:
        self.index = index
        self.lists = index.invlists
        sizes = np.array([self.lists.list_size(i) for i in range(index.nlist)], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.raw = isinstance(index, (faiss.IndexIVFFlat, faiss.IndexBinaryIVF))

    def read(self, start: int, stop: int) -> tuple[np.ndarray | None, np.ndarray]:
        ids: list[np.ndarray] = []
        vectors: list[np.ndarray] = []
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        for list_no in range(first, len(self.offsets) - 1):
            lo, hi = self.offsets[list_no], self.offsets[list_no + 1]
            if lo >= stop:
                break
            a, b = max(start, lo) - lo, min(stop, hi) - lo
            if a >= b:
                continue
            ids.append(self.ids(list_no)[a:b])
            vectors.append(self._decode(list_no, self.codes(list_no)[a:b]))
        return np.concatenate(ids), np.concatenate(vectors)

    # The lists hand out `long *`, which rev_swig_ptr refuses: view them by address.

    def ids(self, list_no: int) -> np.ndarray:
        size = int(self.offsets[list_no + 1] - self.offsets[list_no])
        if size == 0:  # empty lists may hand out no pointer at all
            return np.empty(0, dtype=np.int64)
        return faiss.rev_swig_ptr(faiss.cast_integer_to_idx_t_ptr(int(self.lists.get_ids(list_no))), size)

    def codes(self, list_no: int) -> np.ndarray:
        size, code_size = int(self.offsets[list_no + 1] - self.offsets[list_no]), self.lists.code_size
        if size == 0:
            return np.empty((0, code_size), dtype=np.uint8)
        raw = faiss.cast_integer_to_uint8_ptr(int(self.lists.get_codes(list_no)))  # type: ignore[attr-defined]  # SWIG
        return faiss.rev_swig_ptr(raw, size * code_size).reshape(size, code_size)

    def _decode(self, list_no: int, codes: np.ndarray) -> np.ndarray:
        if self.raw:
            return codes.view(np.float32) if isinstance(self.index, faiss.IndexIVFFlat) else codes
        coarse = np.frombuffer(np.int64(list_no).tobytes()[: self.index.coarse_code_size()], dtype=np.uint8)
        return np.asarray(self.index.sa_decode(np.hstack([np.broadcast_to(coarse, (len(codes), len(coarse))), codes])))
