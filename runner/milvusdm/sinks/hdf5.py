"""HDF5 files as a target: MilvusDM's layout, readable by ``source.hdf5`` (see ``layout``).

``path`` is one file, or a folder (a path ending in ``/``, or an existing directory) that gets
one file per source partition, ``<collection>_<partition>.h5``, as MilvusDM wrote them.
An ``s3://`` path is written to a staging file under $TMPDIR (named after the URL, so a
resumed run finds it) and uploaded when complete: nothing partial ever appears in the bucket.

Rows are written at their source positions into chunked, resizable datasets, so replaying a
batch after a resume rewrites the same bytes: a resumed export holds exactly the data of an
uninterrupted one. Each file is ``<name>.partial`` until finished, then renamed: a failed or
interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.layout import IDS, VECTORS, datasets, from_file, to_file, write_schema
from milvusdm.schema import Schema
from milvusdm.sinks.base import Sink
from milvusdm.spec import Hdf5Target, S3Settings
from milvusdm.storage import ObjectStore, is_s3

COPY_ROWS = 100_000
CHUNK_BYTES = 4 << 20


def staging(url: str) -> Path:
    """Where an s3:// export is written before its upload."""
    return Path(tempfile.gettempdir()) / "milvusdm-exports" / hashlib.sha256(url.encode()).hexdigest()[:16] / url.rsplit("/", 1)[-1]


class ExportFile:
    """One output file and the rows it takes: ``first`` is the source position of its row 0.
    With a ``store``, ``location`` is an s3:// URL and the file is staged locally."""

    def __init__(self, location: str, schema: Schema, first: int, store: ObjectStore | None = None) -> None:
        self.location, self.schema, self.first, self.store = location, schema, first, store
        self.path = staging(location) if store else Path(location)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.file: h5py.File | None = None
        self._positions: tuple[np.ndarray, np.ndarray] | None = None

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
                target = self.file[name]
                target.resize(dataset.shape[0], axis=0)
                for lo in range(0, dataset.shape[0], COPY_ROWS):
                    target[lo : lo + COPY_ROWS] = dataset[lo : lo + COPY_ROWS]
        self.file.flush()
        killed.unlink()

    def write(self, batch: Batch) -> None:
        start, stop = batch.start - self.first, batch.stop - self.first
        values = {VECTORS: batch.vectors, IDS: batch.ids, **batch.scalars}
        for name, (column, _, _) in datasets(self.schema).items():
            dataset = self.file[name]
            if dataset.shape[0] < stop:
                dataset.resize(stop, axis=0)
            dataset[start:stop] = to_file(column, values[name])
        self.file.flush()  # on disk before the engine records the checkpoint

    def exists(self) -> bool:
        return self.store.exists(self.location) if self.store else self.path.exists()

    def finish(self) -> None:
        if self.file is not None and self.file.mode == "r":
            return
        if self.file is not None:
            self.file.close()
            os.replace(self.partial, self.path)
            if self.store:
                self.store.upload(self.path, self.location)
        self.open_finished()

    def open_finished(self) -> None:
        if self.store and not self.path.exists():
            self.file = h5py.File(self.store.open(self.location), "r")
            return
        if not self.path.exists():
            raise InputError(f"{self.path} does not exist", "run the export first")
        self.file = h5py.File(self.path, "r")

    def count(self) -> int:
        return int(self.file[IDS].shape[0])

    def fetch(self, ids: np.ndarray, with_data: bool) -> dict[str, np.ndarray]:
        """Rows by id, through the ids sorted with their positions (16+ bytes a row, built once)."""
        if self._positions is None:
            stored = _read(self.file, IDS, self.schema)
            order = np.argsort(stored, kind="stable")
            self._positions = stored[order], order
        sorted_ids, order = self._positions
        slots = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        hit = sorted_ids[slots] == ids if len(sorted_ids) else np.zeros(len(ids), bool)
        rows = np.sort(order[slots[hit]])
        names = datasets(self.schema) if with_data else [IDS]
        return {name: _read(self.file, name, self.schema, rows) for name in names}

    def remove(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.store:
            self.path.unlink(missing_ok=True)  # uploaded; the partial file stays for a resume
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


class Hdf5Sink(Sink):
    def __init__(self, spec: Hdf5Target, s3: S3Settings | None = None) -> None:
        self.spec = spec
        self.store = ObjectStore(s3) if is_s3(spec.path) else None
        self.folder = spec.path.endswith("/") or (not self.store and Path(spec.path).is_dir())
        self.files: dict[str | None, ExportFile] = {}
        self.lock = threading.Lock()  # h5py serialises calls anyway; this keeps resize+write atomic

    def describe(self) -> str:
        return f"hdf5:{self.spec.path}"

    def _plan(self, schema: Schema) -> None:
        """One file, or in a folder one per partition (keyed by partition name)."""
        self.schema = schema
        if not self.folder:
            self.files = {None: ExportFile(self.spec.path, schema, 0, self.store)}
            return
        folder, stem = self.spec.path.rstrip("/") + "/", schema.name or "export"
        if not schema.partitions:
            self.files = {None: ExportFile(f"{folder}{stem}.h5", schema, 0, self.store)}
            return
        self.files = {
            name: ExportFile(f"{folder}{stem}_{name}.h5", replace(schema, partitions=((name, rows),)),
                             schema.partition_start(name), self.store)
            for name, rows in schema.partitions
        }

    def resumable(self, schema: Schema) -> bool:
        self._plan(schema)
        return all(export.partial.exists() for export in self.files.values())

    def prepare(self, schema: Schema, resume: bool) -> bool:
        self._plan(schema)
        self.created = True
        if resume:
            for export in self.files.values():
                export.reopen()
            return True
        for export in self.files.values():
            if export.exists() and not self.spec.overwrite:
                raise InputError(f"{export.location} already exists", "set target.hdf5.overwrite: true, or choose another path")
        for export in self.files.values():
            export.path.parent.mkdir(parents=True, exist_ok=True)
            export.create()
        return True

    def attach(self, schema: Schema) -> None:
        self._plan(schema)
        for export in self.files.values():
            export.open_finished()

    def write(self, batch: Batch, replay: bool = False) -> None:
        export = self.files[batch.partition if self.folder and batch.partition in self.files else None]
        with self.lock:
            export.write(batch)

    def finish(self) -> None:
        for export in self.files.values():
            export.finish()

    def count(self) -> int:
        return sum(export.count() for export in self.files.values())

    def fetch(self, ids: np.ndarray, with_data: bool) -> Batch:
        found = [export.fetch(ids, with_data) for export in self.files.values()]
        columns = {name: np.concatenate([f[name] for f in found]) for name in found[0]}
        if not with_data:
            return Batch(0, columns[IDS], np.empty((len(columns[IDS]), 0), dtype=np.float32))
        scalars = {c.name: columns[c.name] for c in self.schema.scalars}
        return Batch(0, columns[IDS], columns[VECTORS], scalars)

    def rollback(self, written: Iterator[np.ndarray] | None) -> None:
        for export in self.files.values():
            export.remove()

    def close(self) -> None:
        for export in self.files.values():
            export.close()


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
