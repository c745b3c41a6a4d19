"""Parquet files as a target, in the layout Milvus' bulk import reads (see ``arrow``), with the
collection schema in the key-value metadata so ``source.parquet`` recreates the collection.

A Parquet file cannot be appended to after a crash (its footer comes last), so while the export
runs, ``<name>.partial`` is a folder of segments, one per batch, each named by its first row and
renamed into place when written: a replayed batch replaces its segment whole. Finishing walks
the segments from row 0 (after a resume, the segments of the latest run win, and with the same
source rows any tiling holds the same data), writes each as one row group of the final file
(a batch: ~5 MB at 10,000 x 128-d, what readers stream well; joining them into 16 MiB row
groups measured ~35 MB more peak memory) and renames the file into place. Files, folders, S3 staging: see ``files``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from milvusdm.arrow import arrow_schema, columns, from_arrow, to_arrow
from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.schema import Schema
from milvusdm.sinks.files import ExportFile, FileSink
from milvusdm.sources.parquet import open_parquet
from milvusdm.storage import ObjectStore, RangeReader

SEGMENT = ".parquet"


class ParquetExport(ExportFile):
    def __init__(self, location: str, schema: Schema, first: int, store: ObjectStore | None = None) -> None:
        super().__init__(location, schema, first, store)
        self.layout = columns(schema)
        self.arrow = arrow_schema(schema)
        scalars = [name for name, c in self.layout.items() if not c.is_vector]
        self.options = {"use_dictionary": scalars, "write_statistics": scalars}  # vectors: neither helps
        self.file: pq.ParquetFile | None = None

    def create(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)

    def reopen(self) -> None:
        if not self.partial.is_dir():
            raise InputError(f"{self.partial} is gone, so the export cannot resume", "run without --resume")

    def write(self, batch: Batch) -> None:
        values = [batch.ids, batch.vectors, *(batch.scalars[c.name] for c in self.schema.scalars)]
        table = pa.Table.from_arrays(
            [to_arrow(c, v) for c, v in zip(self.layout.values(), values, strict=True)], schema=self.arrow
        )
        segment = self.partial / f"{batch.start - self.first:012d}{SEGMENT}"
        written = segment.with_name(segment.name + ".tmp")
        pq.write_table(table, written, **self.options)
        os.replace(written, segment)  # whole, before the engine records the checkpoint

    def _segments(self) -> list[Path]:
        """The segments that tile rows 0..end, in order."""
        found = {int(name[: -len(SEGMENT)]): name for name in os.listdir(self.partial) if name.endswith(SEGMENT)}
        order: list[Path] = []
        row = 0
        while row in found:
            order.append(self.partial / found[row])
            row += pq.read_metadata(order[-1]).num_rows
        if any(start > row for start in found):
            raise InputError(f"{self.partial} lacks rows from {row} on", "run the export again without --resume")
        return order

    def complete(self) -> bool:
        if self.file is not None or not self.partial.is_dir():
            return False
        assembled = self.partial / "assembled"
        with pq.ParquetWriter(assembled, self.arrow, **self.options) as writer:
            for segment in self._segments():
                writer.write_table(pq.ParquetFile(segment).read(use_threads=False))
        os.replace(assembled, self.path)
        shutil.rmtree(self.partial)
        return True

    def open_file(self, source: Path | RangeReader) -> None:
        self.file = open_parquet(source, self.location)

    @property
    def opened(self) -> pq.ParquetFile:
        """The finished file, once ``open_file`` has opened it."""
        assert self.file is not None
        return self.file

    def count(self) -> int:
        return cast(int, self.opened.metadata.num_rows)

    def _column(self, table: pa.Table, name: str) -> np.ndarray:
        return from_arrow(self.layout[name], table.column(name).combine_chunks(), self.location)

    def ids(self) -> np.ndarray:
        key = next(iter(self.layout))
        return self._column(self.opened.read(columns=[key]), key)

    def rows(self, positions: np.ndarray, with_data: bool) -> Batch:
        names = list(self.layout) if with_data else list(self.layout)[:1]
        metadata = self.opened.metadata
        starts = np.cumsum([0] + [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)])
        groups = np.searchsorted(starts, positions, side="right") - 1
        parts = [
            self.opened.read_row_group(int(g), columns=names).take(pa.array(positions[groups == g] - starts[g]))
            for g in np.unique(groups)
        ]
        table = pa.concat_tables(parts) if parts else self.arrow.empty_table().select(names)
        key, vector, *others = self.layout
        ids = self._column(table, key)
        if not with_data:
            return Batch(0, ids, np.empty((len(ids), 0), dtype=np.float32))
        scalars = {self.layout[name].name: self._column(table, name) for name in others}
        return Batch(0, ids, self._column(table, vector), scalars)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.drop_staged()

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.partial, ignore_errors=True)


class ParquetSink(FileSink):
    kind, suffix, export = "parquet", ".parquet", ParquetExport
