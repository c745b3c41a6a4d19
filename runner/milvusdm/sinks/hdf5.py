"""HDF5 files as a target: MilvusDM's layout (``embeddings`` + ``ids``), readable by ``source.hdf5``.

Rows are written at their source positions into chunked, resizable datasets, so replaying a
batch after a resume rewrites the same bytes: a resumed export holds exactly the data of an
uninterrupted one. The file is ``<path>.partial`` until finished, then renamed: a failed or
interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from milvusdm.batch import NUMPY_TYPES, Batch, Schema
from milvusdm.errors import InputError
from milvusdm.sinks.base import Sink
from milvusdm.spec import Hdf5Target

SCHEMA_ATTRIBUTE = "milvusdm_schema"
COPY_ROWS = 100_000
DISTANCES = {"L2": "euclidean", "COSINE": "angular", "IP": "dot", "HAMMING": "hamming", "JACCARD": "jaccard"}


class Hdf5Sink(Sink):
    def __init__(self, spec: Hdf5Target) -> None:
        self.spec = spec
        self.path = Path(spec.path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.file: h5py.File | None = None
        self.schema: Schema | None = None
        self.lock = threading.Lock()  # h5py serialises calls anyway; this keeps resize+write atomic
        self._positions: tuple[np.ndarray, np.ndarray] | None = None

    def describe(self) -> str:
        return f"hdf5:{self.path}"

    def prepare(self, schema: Schema, resume: bool) -> bool:
        self.schema = schema
        self.created = True
        if resume:
            self._reopen()
            return True
        if self.path.exists() and not self.spec.overwrite:
            raise InputError(f"{self.path} already exists", "set target.hdf5.overwrite: true, or choose another path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create()
        return True

    def _create(self) -> None:
        schema = self.schema
        # SWMR on the latest format keeps the file consistent on disk up to the last flush, so a
        # killed export can be read back (as an SWMR reader) when it resumes.
        self.file = h5py.File(self.partial, "w", libver="latest")
        rows = max(1, min(10_000, (4 << 20) // max(1, schema.dim * 4)))  # ~4 MB chunks
        vector_dtype = np.uint8 if schema.binary else np.float32
        width = schema.dim // 8 if schema.binary else schema.dim
        self.file.create_dataset("embeddings", (0, width), vector_dtype, maxshape=(None, width), chunks=(rows, width))
        self.file.create_dataset("ids", (0,), np.int64, maxshape=(None,), chunks=(rows,))
        for column in schema.scalars:
            dtype = h5py.string_dtype() if column.max_length else NUMPY_TYPES[column.dtype]
            self.file.create_dataset(column.name, (0,), dtype, maxshape=(None,), chunks=(rows,))
        self.file.attrs[SCHEMA_ATTRIBUTE] = json.dumps({
            "dim": schema.dim, "binary": schema.binary, "metric": schema.metric,
            "scalars": [{"name": c.name, "type": c.dtype.name} for c in schema.scalars],
        })
        if schema.metric in DISTANCES:
            self.file.attrs["distance"] = DISTANCES[schema.metric]
        self.file.swmr_mode = True

    def _reopen(self) -> None:
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
        self._create()
        with previous:
            for name, dataset in previous.items():
                target = self.file[name]
                target.resize(dataset.shape[0], axis=0)
                for lo in range(0, dataset.shape[0], COPY_ROWS):
                    target[lo : lo + COPY_ROWS] = dataset[lo : lo + COPY_ROWS]
        self.file.flush()
        killed.unlink()

    def attach(self, schema: Schema) -> None:
        if not self.path.exists():
            raise InputError(f"{self.path} does not exist", "run the export first")
        self.schema = schema
        self.file = h5py.File(self.path, "r")

    def write(self, batch: Batch, replay: bool = False) -> None:
        with self.lock:
            for name, values in (("embeddings", batch.vectors), ("ids", batch.ids), *batch.scalars.items()):
                dataset = self.file[name]
                if dataset.shape[0] < batch.stop:
                    dataset.resize(batch.stop, axis=0)
                dataset[batch.start : batch.stop] = values
            self.file.flush()  # on disk before the engine records the checkpoint

    def finish(self) -> None:
        if self.file.mode == "r":
            return
        self.file.flush()
        self.file.close()
        os.replace(self.partial, self.path)
        self.file = h5py.File(self.path, "r")

    def count(self) -> int:
        return int(self.file["ids"].shape[0])

    def fetch(self, ids: np.ndarray, with_data: bool) -> Batch:
        """Rows by id, through the ids sorted with their positions (16 bytes a row, built once)."""
        if self._positions is None:
            stored = self.file["ids"][:]
            order = np.argsort(stored, kind="stable")
            self._positions = stored[order], order
        sorted_ids, order = self._positions
        slots = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        hit = sorted_ids[slots] == ids if len(sorted_ids) else np.zeros(len(ids), bool)
        rows = np.sort(order[slots[hit]])
        found = _take(self.file["ids"], rows)
        if not with_data:
            return Batch(0, found, np.empty((len(found), 0), dtype=np.float32))
        scalars = {c.name: _take(self.file[c.name], rows) for c in self.schema.scalars}
        return Batch(0, found, _take(self.file["embeddings"], rows), scalars)

    def rollback(self, written: Iterator[np.ndarray] | None) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _take(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Rows by sorted position: one slice when contiguous (the usual case), else a selection."""
    if not len(rows):
        return np.empty((0, *dataset.shape[1:]), dtype=dataset.dtype)
    strings = h5py.check_string_dtype(dataset.dtype) is not None
    view = dataset.asstr() if strings else dataset
    if rows[-1] - rows[0] + 1 == len(rows):
        return view[int(rows[0]) : int(rows[-1]) + 1]
    return view[rows]
