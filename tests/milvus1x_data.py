"""A Milvus 1.x data directory for tests, and what a correct reader must find in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from milvusdm.testing.milvus1x_writer import BACKUP, TO_DELETE, TO_INDEX, Milvus1xWriter

BIG = 2**60  # ids beyond float64's exact range, as 1.x generated them


def _rows(rng: np.random.Generator, n: int, dim: int, binary: bool, first: int) -> tuple[np.ndarray, np.ndarray]:
    ids = BIG + first + np.arange(n, dtype=np.int64) * 7
    vectors = (
        rng.integers(0, 256, (n, dim // 8), dtype=np.uint8)
        if binary
        else rng.standard_normal((n, dim), dtype=np.float32)
    )
    return ids, vectors


class Expected:
    """collection -> partition (2.x name) -> (ids, vectors) of the live rows, in source order."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}

    def add(self, collection: str, partition: str, ids: np.ndarray, vectors: np.ndarray, deleted=()) -> None:
        keep = np.ones(len(ids), dtype=bool)
        keep[list(deleted)] = False
        self.rows.setdefault(collection, {}).setdefault(partition, []).append((ids[keep], vectors[keep]))

    def of(self, collection: str, partition: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        parts = [p for name, ps in self.rows[collection].items() if partition in (None, name) for p in ps]
        return np.concatenate([i for i, _ in parts]), np.concatenate([v for _, v in parts])


def legacy_directory(
    root: Path, seed: int = 5, wal: bool = False, meta: bool = True
) -> tuple[Milvus1xWriter, Expected]:
    """Float L2 and IP and binary collections; several segments, with and without deletions
    (unsorted, repeated); an indexed segment; a BACKUP one; a TO_DELETE leftover; partitions,
    one tag not a valid 2.x name and one reused after its first partition was dropped; a
    dropped collection. ``meta``: write db/meta.sqlite (else use the writer's rows for MySQL)."""
    rng, writer, expected, first = np.random.default_rng(seed), Milvus1xWriter(root), Expected(), 0

    def segment(collection: str, table: str, partition: str, n: int, dim: int, binary=False, deleted=(), **kw):
        nonlocal first
        ids, vectors = _rows(rng, n, dim, binary, first)
        first += n
        writer.segment(table, ids, vectors, deleted=deleted, **kw)
        expected.add(collection, partition, ids, vectors, deleted)

    floats = writer.collection("floats", 16, metric=1)
    segment("floats", floats, "_default", 300, 16, deleted=[250, 7, 3, 7, 0])
    segment("floats", floats, "_default", 200, 16, file_type=TO_INDEX, indexed=True)
    segment("floats", floats, "_default", 100, 16, file_type=BACKUP, deleted=[99])
    leftover_ids, leftover = _rows(rng, 50, 16, False, 0)  # merged away: its rows live in the segments above
    writer.segment(floats, leftover_ids, leftover, file_type=TO_DELETE)
    tagged = writer.partition(floats, "tag-a")
    segment("floats", tagged, "tag_a", 150, 16, deleted=[149, 10])
    dropped = writer.partition(floats, "reused", state=1)
    writer.segment(dropped, *_rows(rng, 40, 16, False, 10**6))
    reused = writer.partition(floats, "reused")
    segment("floats", reused, "reused", 60, 16)

    ips = writer.collection("ips", 8, metric=2)
    segment("ips", ips, "_default", 120, 8)

    bins = writer.collection("bins", 64, metric=3)
    segment("bins", bins, "_default", 100, 64, binary=True, deleted=[5, 1])
    segment("bins", bins, "_default", 80, 64, binary=True)

    gone = writer.collection("gone", 8, metric=1, state=1)
    writer.segment(gone, *_rows(rng, 30, 8, False, 2 * 10**6))
    if meta:
        writer.write_sqlite(wal=wal)
    return writer, expected
