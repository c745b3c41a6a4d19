"""Writes Milvus 1.x data directories from the format's specification, for tests and benchmarks.

The tables are Milvus 1.1's (``Tables``, ``TableFiles``, ``Environment``, every column), the
segment files its codecs' (an 8-byte byte count, then the payload).
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

TABLES = (
    "Tables",
    [
        "id",
        "table_id",
        "state",
        "dimension",
        "created_on",
        "flag",
        "index_file_size",
        "engine_type",
        "index_params",
        "metric_type",
        "owner_table",
        "partition_tag",
        "version",
        "flush_lsn",
    ],
)
FILES = (
    "TableFiles",
    [
        "id",
        "table_id",
        "segment_id",
        "engine_type",
        "file_id",
        "file_type",
        "file_size",
        "row_count",
        "updated_time",
        "created_on",
        "date",
    ],
)
SQLITE_SCHEMA = (
    (
        "CREATE TABLE Tables (id INTEGER PRIMARY KEY NOT NULL, table_id TEXT UNIQUE NOT NULL, state INTEGER NOT NULL, "
        "dimension INTEGER NOT NULL, created_on INTEGER NOT NULL, flag INTEGER DEFAULT 0 NOT NULL, "
        "index_file_size INTEGER NOT NULL, engine_type INTEGER NOT NULL, index_params TEXT NOT NULL, "
        "metric_type INTEGER NOT NULL, owner_table TEXT DEFAULT '' NOT NULL, partition_tag TEXT DEFAULT '' NOT NULL, "
        "version TEXT DEFAULT '0.10.0' NOT NULL, flush_lsn INTEGER DEFAULT 0 NOT NULL)"
    ),
    (
        "CREATE TABLE TableFiles (id INTEGER PRIMARY KEY NOT NULL, table_id TEXT NOT NULL, segment_id TEXT DEFAULT '' "
        "NOT NULL, engine_type INTEGER NOT NULL, file_id TEXT NOT NULL, file_type INTEGER NOT NULL, file_size INTEGER "
        "DEFAULT 0 NOT NULL, row_count INTEGER DEFAULT 0 NOT NULL, updated_time INTEGER NOT NULL, created_on INTEGER "
        "NOT NULL, date INTEGER DEFAULT -1 NOT NULL)"
    ),
    "CREATE TABLE Environment (global_lsn INTEGER DEFAULT 0 NOT NULL)",
)
MYSQL_SCHEMA = tuple(
    statement.replace("INTEGER PRIMARY KEY", "BIGINT PRIMARY KEY AUTO_INCREMENT")
    .replace("TEXT UNIQUE", "VARCHAR(255) UNIQUE")
    .replace(" TEXT", " VARCHAR(255)")
    .replace("INTEGER", "BIGINT")
    for statement in SQLITE_SCHEMA
)
RAW, TO_INDEX, INDEX, TO_DELETE, BACKUP = 1, 2, 3, 4, 7
NOW = 1_606_800_000_000_000  # microseconds, as 1.x stamps rows


def _write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.uint64(len(payload)).tobytes() + payload)


class Milvus1xWriter:
    """A data directory in the making: add collections, partitions and segments, then the meta."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tables: list[tuple[Any, ...]] = []
        self.files: list[tuple[Any, ...]] = []
        self.clock = itertools.count(NOW)

    def collection(self, name: str, dimension: int, metric: int = 1, state: int = 0) -> str:
        self.tables.append(
            (
                len(self.tables) + 1,
                name,
                state,
                dimension,
                next(self.clock),
                0,
                1024 << 20,
                1,
                "{}",
                metric,
                "",
                "",
                "0.10.0",
                0,
            )
        )
        return name

    def partition(self, owner: str, tag: str, state: int = 0) -> str:
        """A partition is its own Tables row with a numeric table_id, its owner and its tag."""
        dimension, metric = next((t[3], t[9]) for t in self.tables if t[1] == owner)
        table_id = str(next(self.clock))
        self.tables.append(
            (
                len(self.tables) + 1,
                table_id,
                state,
                dimension,
                next(self.clock),
                0,
                1024 << 20,
                1,
                "{}",
                metric,
                owner,
                tag,
                "0.10.0",
                0,
            )
        )
        return table_id

    def segment(
        self,
        table_id: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        deleted: Any = (),
        file_type: int = RAW,
        indexed: bool = False,
        row_count: int | None = None,
    ) -> str:
        """A segment's files, and its meta rows (an INDEX row too when ``indexed``)."""
        segment_id = str(next(self.clock))
        folder = self.root / "db" / "tables" / table_id / segment_id
        _write(folder / f"{segment_id}.rv", np.ascontiguousarray(vectors).tobytes())
        _write(folder / f"{segment_id}.uid", np.asarray(ids, dtype=np.int64).tobytes())
        if len(deleted):
            _write(folder / "deleted_docs", np.asarray(deleted, dtype=np.int32).tobytes())
        live = len(ids) - len(set(np.asarray(deleted).tolist())) if row_count is None else row_count
        self._file(table_id, segment_id, segment_id, file_type, vectors.nbytes, live)
        if indexed:
            self._file(table_id, segment_id, str(next(self.clock)), INDEX, vectors.nbytes, live)
        return segment_id

    def _file(self, table_id: str, segment_id: str, file_id: str, file_type: int, size: int, rows: int) -> None:
        stamp = next(self.clock)
        self.files.append(
            (len(self.files) + 1, table_id, segment_id, 1, file_id, file_type, size, rows, stamp, stamp, -1)
        )

    def rows(self) -> list[tuple[str, list[str], list[tuple[Any, ...]]]]:
        return [(TABLES[0], TABLES[1], self.tables), (FILES[0], FILES[1], self.files)]

    def write_sqlite(self, wal: bool = False) -> Path:
        """db/meta.sqlite; ``wal``: the rows only in its -wal file, as a running 1.x server left them."""
        path = self.root / "db" / "meta.sqlite"
        live = path.with_name("meta-live.sqlite") if wal else path
        live.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(live)
        if wal:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA wal_autocheckpoint=0")
        for statement in SQLITE_SCHEMA:
            connection.execute(statement)
        for table, columns, rows in self.rows():
            marks = ", ".join("?" * len(columns))
            connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        connection.commit()
        if wal:  # copied while open: closing the last connection would checkpoint the WAL away
            for suffix in ("", "-wal"):
                shutil.copyfile(f"{live}{suffix}", f"{path}{suffix}")
        connection.close()
        for leftover in live.parent.glob("meta-live.sqlite*") if wal else ():
            leftover.unlink()
        return path

    def write_mysql(self, connection: Any) -> None:
        """The same rows into a MySQL/MariaDB meta database (a pymysql connection)."""
        with connection.cursor() as cursor:
            for statement in MYSQL_SCHEMA:
                cursor.execute(statement)
            for table, columns, rows in self.rows():
                marks = ", ".join(["%s"] * len(columns))
                cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        connection.commit()
