"""File targets (HDF5, Parquet): what every export shares.

``path`` is one file, or a folder (a path ending in ``/``, or an existing directory) that gets
one file per source partition, ``<collection>_<partition><suffix>``, as MilvusDM wrote them.
An ``s3://`` path is written to a staging file under $TMPDIR (named after the URL, so a
resumed run finds it) and uploaded when complete: nothing partial ever appears in the bucket.
Each file is ``<name>.partial`` until finished, then renamed: a failed or interrupted run never
leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from milvusdm.batch import Batch
from milvusdm.errors import InputError
from milvusdm.schema import Schema
from milvusdm.sinks.base import Sink, export_files
from milvusdm.spec import Export, S3Settings
from milvusdm.storage import ObjectStore, RangeReader, is_s3, staging


class ExportFile(ABC):
    """One output file and the rows it takes: ``first`` is the source position of its row 0.
    With a ``store``, ``location`` is an s3:// URL and the file is staged locally."""

    def __init__(self, location: str, schema: Schema, first: int, store: ObjectStore | None = None) -> None:
        self.location, self.schema, self.first, self.store = location, schema, first, store
        self.path = staging(location) if store else Path(location)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._positions: tuple[np.ndarray, np.ndarray] | None = None

    @abstractmethod
    def create(self) -> None:
        """Start a fresh partial file."""

    @abstractmethod
    def reopen(self) -> None:
        """Continue the partial file of a killed export."""

    @abstractmethod
    def write(self, batch: Batch) -> None:
        """Store a batch at its rows, durably before the engine records the checkpoint."""

    @abstractmethod
    def complete(self) -> bool:
        """Close the partial file and rename it to ``path``; False if it was finished already."""

    @abstractmethod
    def open_file(self, source: Path | RangeReader) -> None:
        """Open a finished file (a local path, or a seekable object-store reader) to read."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every id of the finished file, in file order."""

    @abstractmethod
    def rows(self, positions: np.ndarray, with_data: bool) -> Batch:
        """The rows at these sorted positions; vectors and scalars only ``with_data``."""

    @abstractmethod
    def close(self) -> None: ...

    def exists(self) -> bool:
        return self.store.exists(self.location) if self.store else self.path.exists()

    def finish(self) -> None:
        if self.complete():
            if self.store:
                self.store.upload(self.path, self.location)
            self.open_finished()

    def open_finished(self) -> None:
        if self.store and not self.path.exists():
            self.open_file(self.store.open(self.location))
        elif not self.path.exists():
            raise InputError(f"{self.path} does not exist", "run the export first")
        else:
            self.open_file(self.path)

    def fetch(self, ids: np.ndarray, with_data: bool) -> Batch:
        """Rows by id, through the ids sorted with their positions (16+ bytes a row, built once)."""
        if self._positions is None:
            stored = self.ids()
            order = np.argsort(stored, kind="stable")
            self._positions = stored[order], order
        sorted_ids, order = self._positions
        slots = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        hit = sorted_ids[slots] == ids if len(sorted_ids) else np.zeros(len(ids), bool)
        return self.rows(np.sort(order[slots[hit]]), with_data)

    def remove(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)

    def drop_staged(self) -> None:
        """An uploaded staging file is not needed any more; a partial one stays for a resume."""
        if self.store:
            self.path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()


class FileSink(Sink):
    """Exports to files of one kind: ``export`` is its ExportFile class, ``suffix`` its files' suffix."""

    kind: str
    suffix: str
    export: type[ExportFile]

    def __init__(self, spec: Export, s3: S3Settings | None = None) -> None:
        self.spec = spec
        self.store = ObjectStore(s3) if is_s3(spec.path) else None
        self.files: dict[str | None, ExportFile] = {}

    def describe(self) -> str:
        return f"{self.kind}:{self.spec.path}"

    def _planned(self, schema: Schema) -> dict[str | None, ExportFile]:
        planned = export_files(self.spec.path, not self.store, schema, self.suffix)
        return {
            name: self.export(location, part, first, self.store) for name, (location, part, first) in planned.items()
        }

    def _plan(self, schema: Schema) -> None:
        self.schema, self.files = schema, self._planned(schema)

    def resumable(self, schema: Schema) -> bool:
        return all(export.partial.exists() for export in self._planned(schema).values())

    def identities(self) -> set[str]:
        path = Path(self.spec.path)
        return {f"file:{path.resolve()}"} if not self.store and path.is_file() else set()

    def prepare(self, schema: Schema, resume: bool) -> bool:
        self._plan(schema)
        self.created = True
        if resume:
            for export in self.files.values():
                export.reopen()
            return True
        for export in self.files.values():
            if export.exists() and not self.spec.overwrite:
                raise InputError(
                    f"{export.location} already exists",
                    f"set target.{self.kind}.overwrite: true, or choose another path",
                )
        for export in self.files.values():
            try:
                export.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InputError(
                    f"cannot create the folder of {export.location}: {error.strerror}",
                    f"set target.{self.kind}.path to a path in a writable folder",
                ) from None
        for export in self.files.values():
            export.create()
        return True

    def attach(self, schema: Schema) -> None:
        self._plan(schema)
        for export in self.files.values():
            export.open_finished()

    def write(self, batch: Batch, replay: bool = False) -> None:
        (self.files.get(batch.partition) or self.files[None]).write(batch)

    def finish(self) -> None:
        for export in self.files.values():
            export.finish()

    def count(self) -> int:
        return sum(export.count() for export in self.files.values())

    def fetch(self, ids: np.ndarray, with_data: bool) -> Batch:
        found = [export.fetch(ids, with_data) for export in self.files.values()]
        scalars = {name: np.concatenate([f.scalars[name] for f in found]) for name in found[0].scalars}
        return Batch(0, np.concatenate([f.ids for f in found]), np.concatenate([f.vectors for f in found]), scalars)

    def scan(self, whole: bool, size: int) -> Iterator[Batch]:
        for export in self.files.values():
            rows = export.count()
            for lo in range(0, rows, size):
                yield export.rows(np.arange(lo, min(lo + size, rows)), whole)

    def abandon(self) -> None:
        for export in self.files.values():
            export.remove()

    def remove(self, added: Iterator[np.ndarray]) -> None:
        self.abandon()  # an export only ever holds this run's rows

    def close(self) -> None:
        for export in self.files.values():
            export.close()
