"""HDF5 files as a target: MilvusDM's layout, readable by ``source.hdf5`` (see ``layout``).

Rows are written at their source positions into chunked, resizable datasets, so replaying a
batch after a resume rewrites the same bytes: a resumed export holds exactly the data of an
uninterrupted one. Files, folders, S3 staging and renames: see ``files``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import h5py
import numpy as np

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.layout import IDS, VECTORS, datasets, from_file, to_file, write_schema
from milvusdm.schema import Schema
from milvusdm.sinks.files import ExportFile, FileSink
from milvusdm.storage import ObjectStore, RangeReader

COPY_ROWS = 100_000
CHUNK_BYTES = 4 << 20


class Hdf5Export(ExportFile):
    def __init__(self, location: str, schema: Schema, first: int, store: ObjectStore | None = None) -> None:
        super().__init__(location, schema, first, store)
        self.file: h5py.File | None = None
        self.lock = threading.Lock()  # h5py serialises calls anyway; this keeps resize+write atomic

    def create(self) -> None:
        # SWMR on the latest format keeps the file consistent on disk up to the last flush, so a
        # killed export can be read back (as an SWMR reader) when it resumes.
        self.file = h5py.File(self.partial, "w", libver="latest")
        for name, (_, shape, dtype) in datasets(self.schema).items():
            row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * getattr(dtype, "itemsize", 8))
            rows = max(1, min(10_000, CHUNK_BYTES // row_bytes))
            self.file.create_dataset(name, (0, *shape), dtype, maxshape=(None, *shape), chunks=(rows, *shape))
        write_schema(self.file, self.schema)
        self.file.swmr_mode = True

    def reopen(self) -> None:
        """Carry the rows of a killed export into a fresh file. A killed writer leaves the file
        flagged as open, which only SWMR readers accept; rows after the checkpoint are
        rewritten by the resumed run, so their state here does not matter."""
        if not self.partial.exists():
            raise InputError(f"{self.partial} is gone, so the export cannot resume", "run without --resume")
        killed = self.partial.with_name(self.partial.name + ".killed")
        os.replace(self.partial, killed)
        try:
            previous = h5py.File(killed, "r", libver="latest", swmr=True)
        except OSError as error:
            raise InputError(f"cannot read the interrupted export {killed}: {error}", "run without --resume") from None
        self.create()
        with previous:
            for name, dataset in previous.items():
                target = self.opened[name]
                target.resize(dataset.shape[0], axis=0)
                for lo in range(0, dataset.shape[0], COPY_ROWS):
                    target[lo : lo + COPY_ROWS] = dataset[lo : lo + COPY_ROWS]
        self.opened.flush()
        killed.unlink()

    def write(self, batch: Batch) -> None:
        start, stop = batch.start - self.first, batch.stop - self.first
        values = {VECTORS: batch.vectors, IDS: batch.ids, **batch.scalars}
        with self.lock:
            for name, (column, _, _) in datasets(self.schema).items():
                dataset = self.opened[name]
                if dataset.shape[0] < stop:
                    dataset.resize(stop, axis=0)
                dataset[start:stop] = to_file(column, values[name])
            self.opened.flush()  # on disk before the engine records the checkpoint

    def complete(self) -> bool:
        if self.file is None or self.file.mode == "r":
            return False
        self.file.close()
        os.replace(self.partial, self.path)
        return True

    def open_file(self, source: Path | RangeReader) -> None:
        self.file = h5py.File(source, "r")

    @property
    def opened(self) -> h5py.File:
        """The file, once ``create``, ``reopen`` or ``open_file`` has opened it."""
        assert self.file is not None
        return self.file

    def count(self) -> int:
        return int(self.opened[IDS].shape[0])

    def ids(self) -> np.ndarray:
        return _read(self.opened, IDS, self.schema)

    def rows(self, positions: np.ndarray, with_data: bool) -> Batch:
        if not with_data:
            ids = _read(self.opened, IDS, self.schema, positions)
            return Batch(0, ids, np.empty((len(ids), 0), dtype=np.float32))
        columns = {name: _read(self.opened, name, self.schema, positions) for name in datasets(self.schema)}
        return Batch(0, columns[IDS], columns[VECTORS], {c.name: columns[c.name] for c in self.schema.scalars})

    def remove(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.drop_staged()


class Hdf5Sink(FileSink):
    kind, suffix, export = "hdf5", ".h5", Hdf5Export


def _read(file: h5py.File, name: str, schema: Schema, rows: np.ndarray | None = None) -> np.ndarray:
    """A dataset's values as batches hold them; ``rows``: sorted positions (None: all).
    Contiguous rows (the usual case) are read as one slice."""
    column = datasets(schema)[name][0]
    dataset = file[name]
    view = dataset.asstr() if h5py.check_string_dtype(dataset.dtype) is not None else dataset
    if rows is None:
        values = view[:]
    elif not len(rows):
        values = np.empty((0, *dataset.shape[1:]), dtype=object if view is not dataset else dataset.dtype)
    elif rows[-1] - rows[0] + 1 == len(rows):
        values = view[int(rows[0]) : int(rows[-1]) + 1]
    else:
        values = view[rows]
    return from_file(column, values)
