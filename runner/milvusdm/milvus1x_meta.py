"""The metadata of a Milvus 0.10.x/1.x data directory, as Milvus 1.1's meta code wrote it.

Two tables matter. ``Tables``: one row per collection *and* per partition (a partition's
row has ``owner_table`` = its collection and a ``partition_tag``; its own ``table_id``
names the folder its segments live in), with ``state`` 1 for dropped ones. ``TableFiles``:
one row per file of a segment; the live raw data of a segment is the row of type RAW,
TO_INDEX or BACKUP, whose ``row_count`` already excludes deleted rows. INDEX rows repeat a
segment that also has raw data; TO_DELETE and the NEW* kinds are leftovers or work in
progress. Reading the rows is I/O (SQLite or MySQL); ``collections`` decides everything.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milvusdm.errors import InputError, TransientError

DEFAULT_TAG = "_default"  # 1.x's name for the rows of the collection's own table
DROPPED = 1  # Tables.state: TO_DELETE
RAW_FILE_TYPES = {1: "RAW", 2: "TO_INDEX", 7: "BACKUP"}  # TableFiles.file_type holding a live segment's raw data
# 1.x MetricType -> (2.x metric, binary vectors)
METRICS = {
    1: ("L2", False),
    2: ("IP", False),
    3: ("HAMMING", True),
    4: ("JACCARD", True),
    5: ("JACCARD", True),
    6: ("SUBSTRUCTURE", True),
    7: ("SUPERSTRUCTURE", True),
}
TABLE_COLUMNS = "table_id, state, dimension, metric_type, owner_table, partition_tag"
FILE_COLUMNS = "table_id, segment_id, file_id, file_type, row_count"
PARTITION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
UNSUPPORTED_METRICS = ("SUBSTRUCTURE", "SUPERSTRUCTURE")


@dataclass(frozen=True)
class Segment:
    folder: str  # the table_id its files live under: db/tables/<folder>/<segment_id>/
    segment_id: str
    rows: int  # live rows (deleted ones excluded), from the metadata


@dataclass(frozen=True)
class Partition:
    tag: str  # as 1.x knew it; DEFAULT_TAG for the collection's own rows
    name: str  # as the 2.x target gets it (see partition_name)
    segments: tuple[Segment, ...]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)


@dataclass(frozen=True)
class Collection:
    name: str
    dimension: int  # bits, for binary collections
    metric: str
    binary: bool
    partitions: tuple[Partition, ...]  # the default partition first, then tags in creation order


def partition_name(tag: str) -> str:
    """1.x accepted any tag; 2.x partition names are [A-Za-z_][A-Za-z0-9_]*. Every other
    character becomes '_', and a name that would start with a digit gets a leading '_'."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", tag.strip())[:254] or "_"
    return name if PARTITION_NAME.match(name) else f"_{name}"


def collections(tables: Iterable[tuple[Any, ...]], files: Iterable[tuple[Any, ...]]) -> dict[str, Collection]:
    """Live collections, their live partitions and their segments, from the two tables' rows
    (``TABLE_COLUMNS`` and ``FILE_COLUMNS`` order)."""
    segments: dict[str, dict[str, Segment]] = {}
    for table_id, segment_id, _file_id, file_type, row_count in files:
        if int(file_type) in RAW_FILE_TYPES:
            segments.setdefault(table_id, {})[segment_id] = Segment(table_id, segment_id, int(row_count))
    live = [row for row in tables if int(row[1]) != DROPPED]
    owners = {row[0]: row for row in live if not row[4]}
    found = {}
    for table_id, _state, dimension, metric_type, _owner, _tag in owners.values():
        if int(metric_type) not in METRICS:
            raise InputError(
                f"collection {table_id!r} has unknown metric type {metric_type}", "check the meta database"
            )
        metric, binary = METRICS[int(metric_type)]
        tags = [(DEFAULT_TAG, table_id)] + [(row[5], row[0]) for row in live if row[4] == table_id]
        partitions = tuple(
            Partition(
                tag,
                DEFAULT_TAG if tag == DEFAULT_TAG else partition_name(tag),
                tuple(sorted(segments.get(folder, {}).values(), key=lambda s: s.segment_id)),
            )
            for tag, folder in tags
        )
        _check_names(table_id, partitions)
        found[table_id] = Collection(table_id, int(dimension), metric, binary, partitions)
    return found


def choose(
    found: dict[str, Collection], wanted: Sequence[tuple[str, Sequence[str] | None]] | None, where: str, field: str
) -> list[tuple[Collection, tuple[Partition, ...]]]:
    """The collections to copy, each with its partitions: ``wanted`` (name, tags or None for
    all) in its order, or every live collection by name. A name or tag that is not live
    (missing or dropped) or a metric milvusdm cannot migrate is refused, so a run of several
    collections stops before writing any. ``where``: the directory; ``field``: what to fix."""
    chosen = []
    for name, tags in wanted if wanted is not None else [(name, None) for name in sorted(found)]:
        if name not in found:
            raise InputError(
                f"collection {name!r} is not in {where} (live collections: {', '.join(sorted(found)) or 'none'})",
                f"check {field} (dropped collections cannot be copied)",
            )
        collection = found[name]
        if collection.metric in UNSUPPORTED_METRICS:
            raise InputError(
                f"collection {name!r} uses the {collection.metric} metric, which milvusdm does not migrate",
                "recreate it in 1.x with HAMMING, JACCARD or TANIMOTO, or export it with a JACCARD metric",
            )
        by_tag = {p.tag: p for p in collection.partitions}
        missing = [tag for tag in tags or () if tag not in by_tag]
        if missing:
            raise InputError(
                f"collection {name!r} has no partition {', '.join(map(repr, missing))} (live tags: {', '.join(by_tag)})",
                f"check {field} (dropped partitions cannot be copied)",
            )
        partitions = collection.partitions if tags is None else tuple(by_tag[tag] for tag in dict.fromkeys(tags))
        chosen.append((collection, partitions))
    return chosen


def _check_names(collection: str, partitions: tuple[Partition, ...]) -> None:
    seen: dict[str, str] = {}
    for partition in partitions:
        if partition.name in seen:
            raise InputError(
                f"partitions {seen[partition.name]!r} and {partition.tag!r} of {collection!r} both map to the "
                f"2.x partition name {partition.name!r}",
                "rename one tag in the 1.x meta, or copy the tags in separate migrations with target.milvus.partition",
            )
        seen[partition.name] = partition.tag


def read_sqlite(path: Path, origin: str) -> dict[str, Collection]:
    """Open a copy of the meta file (and its -wal): a WAL database on a read-only volume
    cannot be opened in place, and the copy sees what the WAL holds. ``origin``: its name for users."""
    if not path.is_file():
        raise InputError(
            f"meta file {origin} does not exist",
            "point source.milvus1x.meta.sqlite at db/meta.sqlite, or give source.milvus1x.meta.mysql for a MySQL meta",
        )
    with tempfile.TemporaryDirectory(prefix="milvusdm-meta-") as folder:
        copy = Path(folder) / "meta.sqlite"
        shutil.copyfile(path, copy)
        for suffix in ("-wal", "-shm"):
            if Path(f"{path}{suffix}").is_file():
                shutil.copyfile(f"{path}{suffix}", f"{copy}{suffix}")
        try:
            connection = sqlite3.connect(copy)
            try:
                return collections(
                    connection.execute(f"SELECT {TABLE_COLUMNS} FROM Tables ORDER BY id"),
                    connection.execute(f"SELECT {FILE_COLUMNS} FROM TableFiles ORDER BY id"),
                )
            finally:
                connection.close()
        except sqlite3.DatabaseError as error:
            raise InputError(
                f"{origin} is not a Milvus 1.x meta database ({error})",
                "point source.milvus1x.meta.sqlite at the directory's db/meta.sqlite",
            ) from None


def read_mysql(host: str, port: int, user: str, password: str | None, database: str) -> dict[str, Collection]:
    import pymysql

    where = f"MySQL {user}@{host}:{port}/{database}"
    try:
        connection = pymysql.connect(
            host=host,
            port=port,
            user=user,
            password=password or "",
            database=database,
            connect_timeout=10,
            read_timeout=60,
        )
    except pymysql.err.OperationalError as error:
        code, message = error.args[0], str(error.args[-1])
        if code in (1044, 1045, 1049):
            raise InputError(
                f"{where} refused the meta connection: {message}",
                "check source.milvus1x.meta.mysql user, password and database",
            ) from None
        raise TransientError(
            f"cannot reach the meta database {where}: {message}",
            "check source.milvus1x.meta.mysql host and port, and the network",
        ) from None
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {TABLE_COLUMNS} FROM Tables ORDER BY id")
            tables = cursor.fetchall()
            cursor.execute(f"SELECT {FILE_COLUMNS} FROM TableFiles ORDER BY id")
            return collections(tables, cursor.fetchall())
    except pymysql.err.ProgrammingError as error:
        raise InputError(
            f"{where} is not a Milvus 1.x meta database ({error.args[-1]})", "check source.milvus1x.meta.mysql.database"
        ) from None
    finally:
        connection.close()
