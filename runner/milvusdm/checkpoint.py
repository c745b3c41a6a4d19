"""Checkpoints: how far a run (or one shard of it) got, so an interrupted run can resume.

A checkpoint is the contiguous prefix of the shard that the target has committed. Rows
after it may or may not have landed; a resumed run writes them idempotently (upsert).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from milvusdm.errors import InputError

if TYPE_CHECKING:
    from milvusdm.spec import MilvusMigration


@dataclass(frozen=True)
class Shard:
    """Rows ``start..stop`` of the source: shard ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def bounds(self, total: int) -> tuple[int, int]:
        """Contiguous, disjoint, covering ranges that differ in size by at most one row."""
        return total * self.index // self.count, total * (self.index + 1) // self.count


@dataclass(frozen=True)
class Checkpoint:
    fingerprint: str  # what the source and target were: a resume must not mix two migrations
    position: int  # rows start..position of the shard are committed
    rows: int  # rows this shard has written in all its attempts
    created: bool = False  # the target (or its staging copy) was created by this migration: a rollback drops it
    baseline: int = 0  # rows the target held before (mode append), for the count check
    conflicts: tuple[str, ...] = ()  # source keys (as text) the target held before: skipped or upserted
    source: str = ""  # the source's content signature: a resume refuses a replaced source
    seed: str = ""  # keys of this migration's digests (see ``digest``)
    digest: str = ""  # digest of rows start..position, of their keys or whole rows (``digest_of``)
    digest_of: str = ""  # "keys", "rows", or "" (verify mode without a digest)
    baseline_digest: str = ""  # "KIND/DIGEST" of what the target held before (mode append); "" if not taken


EntryPhase = Literal["", "Pending", "Copying", "Finishing", "Verifying", "Succeeded", "Failed"]


@dataclass(frozen=True)
class ShardStatus(Checkpoint):
    """One shard's checkpoint and counts, written by its runner pod under its own map key."""

    # The status entry *is* the checkpoint a restarted pod resumes from: one set of fields.

    fingerprint: str = ""  # "": no checkpoint yet
    position: int = 0
    rows: int = 0
    copied: int = 0  # rows of this shard committed so far
    total: int = 0  # rows in this shard
    completed: bool = False
    holder: str = ""  # the pod copying this shard now ("": nobody); see ``lease``
    renew_time: str = ""  # when it last renewed its lease (RFC 3339, UTC, microseconds)
    lease_seconds: int = 0  # how long after renewTime the lease lasts
    # Where the shard (or collection) is; many collections are Pending from the plan on (see ``jobrunner``).
    phase: EntryPhase = ""
    job_index: int = 0  # the Job completion index (pod) that copies this collection
    verified: str = ""  # its verification's result
    message: str = ""  # its one-line result or error

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(**{f.name: getattr(self, f.name) for f in fields(Checkpoint)})

    def at(self, checkpoint: Checkpoint) -> ShardStatus:
        """This entry moved to ``checkpoint``, its counts kept."""
        return replace(self, **{f.name: getattr(checkpoint, f.name) for f in fields(Checkpoint)})


def fingerprint(migration: MilvusMigration) -> str:
    """What was copied where; not how (the mode): the fix a failed run advises may change it."""
    spec = migration.spec
    target = spec.target.model_dump(mode="json", exclude={"milvus": {"mode", "on_conflict"}})
    basis = {"source": spec.source.model_dump(mode="json"), "target": target}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


class CheckpointStore(Protocol):
    def load(self) -> Checkpoint | None: ...

    def save(self, checkpoint: Checkpoint) -> None: ...

    def clear(self) -> None:
        """Forget the run: nothing to resume (it failed and was rolled back, or finished unverified)."""

    def complete(self) -> None:
        """The run succeeded."""


class FileCheckpoints:
    """One JSON file per migration and shard, replaced atomically after every commit."""

    def __init__(self, directory: Path, name: str, shard: Shard = Shard()) -> None:
        suffix = f"-shard{shard.index}" if shard.count > 1 else ""
        self.path = Path(directory) / f"{name}{suffix}.json"

    def load(self) -> Checkpoint | None:
        try:
            saved = json.loads(self.path.read_text())
            return Checkpoint(**saved | {"conflicts": tuple(saved.get("conflicts", ()))})
        except FileNotFoundError:
            return None

    def save(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as file:
            json.dump(asdict(checkpoint), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(file.name, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def complete(self) -> None:
        self.clear()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``NAME.lock`` beside the checkpoint for the run: a second run of the same migration
        is refused at once (the lock goes with the process, however it ends)."""
        where = self.path.with_suffix(".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(where, "a")  # noqa: SIM115 (held for the whole run)
        except OSError as error:
            raise InputError(
                f"--state {self.path.parent} cannot hold checkpoints: {error.strerror}",
                "pass --state a writable folder",
            ) from None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(
                    f"another run of this migration is in progress (it holds {where})",
                    "wait for it to finish, or stop it",
                ) from None
            yield
