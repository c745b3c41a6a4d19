"""The interface every source implements."""

from __future__ import annotations

import glob
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.schema import Schema
from milvusdm.storage import ObjectStore, RangeReader, is_s3


class Source(ABC):
    """Rows addressed by position 0..total-1, read in batches.

    ``open`` checks everything that can be checked before the target is touched;
    positions make checkpoints and shards plain integers.
    """

    schema: Schema
    total: int

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def batches(self, start: int, stop: int, size: int) -> Iterator[Batch]: ...

    def keys(self, start: int, stop: int, size: int) -> Iterator[np.ndarray]:
        """The keys of rows ``start..stop`` in chunks (sources that can, read them without the vectors)."""
        for batch in self.batches(start, stop, size):
            yield as_keys(batch.ids)

    def rows_at(self, positions: np.ndarray) -> Iterator[Batch]:
        """The rows at these sorted positions (a verification sample), a few at a time."""
        for position in positions.tolist():
            yield from self.batches(position, position + 1, 1)

    def identities(self) -> set[str]:
        """What the source physically is (after ``open``): see ``Sink.identities``."""
        return set()

    def signature(self) -> str:
        """A cheap fingerprint of the source's content (after ``open``), kept in the checkpoint so
        a resume refuses a source replaced under the same name; "" when there is none to take."""
        return ""

    def close(self) -> None:
        """Release files and connections."""

    def describe(self) -> str:
        return type(self).__name__


SENTINEL_KEY = np.iinfo(np.int64).max
LOWEST_KEY = np.iinfo(np.int64).min


def refuse_sentinel_key(ids: np.ndarray, origin: str) -> None:
    """Milvus 2.x stores and counts a row keyed 2**63-1 but never returns it (int64's maximum is
    a sentinel in its iterators, and ``id in [...]`` cannot parse it); its expressions cannot
    parse -2**63 either, so such a row could be neither verified nor rolled back: refuse both."""
    if ids.dtype.kind in "iu" and ids.size and (ids == SENTINEL_KEY).any():
        raise InputError(
            f"{origin} has the id 2**63-1 ({SENTINEL_KEY}), which Milvus 2.x stores but never returns",
            "renumber that row; every id from -2**63+1 to 2**63-2 works",
        )
    if ids.dtype.kind == "i" and ids.size and (ids == LOWEST_KEY).any():
        raise InputError(
            f"{origin} has the id -2**63 ({LOWEST_KEY}), which Milvus 2.x expressions cannot name "
            "(it could not be verified or removed)",
            "renumber that row; every id from -2**63+1 to 2**63-2 works",
        )


SIGNATURE_BLOCK = 64 << 10


def content_signature(paths: list[str]) -> str:
    """Size and a hash of the first, middle and last 64 KiB of each local file (not the mtime:
    a file copied to another volume keeps its content, not its times)."""
    digest = hashlib.sha256()
    for path in paths:
        size = os.path.getsize(path)
        digest.update(f"{path}:{size}".encode())
        with open(path, "rb") as file:
            for offset in sorted({0, max(0, size // 2 - SIGNATURE_BLOCK // 2), max(0, size - SIGNATURE_BLOCK)}):
                file.seek(offset)
                digest.update(file.read(SIGNATURE_BLOCK))
    return digest.hexdigest()[:16]


def as_keys(ids: np.ndarray) -> np.ndarray:
    """Ids as sinks take them: integers as int64, strings as they are."""
    return ids.astype(np.int64) if ids.dtype.kind in "iu" else ids


def check_unique_ids(
    chunks: Iterator[np.ndarray], origin: str, fix: str = "make the ids unique; Milvus would store every copy"
) -> None:
    """Refuse duplicate ids, and the one key Milvus loses, before anything is written: Milvus
    would keep every copy of a duplicate.

    Holds 8 bytes per row (the ids alone, for int64 keys), a small fraction of the vectors' size.
    """
    parts = []
    for chunk in chunks:
        refuse_sentinel_key(chunk, origin)
        parts.append(chunk.astype(np.int64) if chunk.dtype.kind in "iu" else chunk)
    if not parts:
        return
    ids = np.sort(np.concatenate(parts))
    repeated = ids[1:][ids[1:] == ids[:-1]]
    if repeated.size:
        raise InputError(
            f"{origin} has {repeated.size} duplicate id(s), e.g. {repeated[0]}",
            fix,
        )


def readable(path: str, store: ObjectStore | None) -> str | RangeReader:
    """A local path as it is, an s3:// URL as a seekable reader of the object."""
    if not is_s3(path):
        return path
    assert store is not None  # sources make one when a path is s3://
    return store.open(path)


def expand(patterns: list[str], store: ObjectStore | None, kind: str, setting: str) -> list[str]:
    """Files named by paths, folders and glob patterns (s3:// too), in the order given (each sorted)."""
    files: list[str] = []
    for pattern in patterns:
        if is_s3(pattern):
            assert store is not None  # sources make one when a path is s3://
            files.extend(store.expand(pattern))
        elif glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"no file matches {pattern!r}", f"check {setting}.paths")
            files.extend(matches)
        elif Path(pattern).is_file():
            files.append(pattern)
        elif Path(pattern).is_dir():  # a folder: every file in it (an export's), sorted
            found = sorted(str(p) for p in Path(pattern).iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise InputError(f"folder {pattern!r} holds no files", f"check {setting}.paths")
            files.extend(found)
        else:
            raise InputError(f"{kind} file {pattern!r} does not exist", f"check {setting}.path, or mount the volume")
    return files
