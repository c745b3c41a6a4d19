"""The migration engine: check the source, prepare the target, stream, finish, verify.

Reading/converting (one thread) overlaps with ``inflight`` writes; batches commit in
source order, so "rows committed" is always a contiguous prefix of the source — the
position a checkpoint can resume from.
"""

from __future__ import annotations

import logging
import queue
import resource
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from pydantic.alias_generators import to_camel
from pymilvus import DataType

from milvusdm import allocator, interrupts
from milvusdm.batch import Batch
from milvusdm.checkpoint import Checkpoint, CheckpointStore, Shard, fingerprint
from milvusdm.checks import check as check_manifest
from milvusdm.digest import Digest, new_seed
from milvusdm.errors import InputError, MigrationError, TransientError, VerificationError
from milvusdm.sinks import Sink, open_sink
from milvusdm.sources import Source, open_source
from milvusdm.spec import MilvusMigration, Target
from milvusdm.verification import Proof, verify

log = logging.getLogger(__name__)
DEFAULT_INFLIGHT = 2
KEY_SCAN = 10_000  # source keys per lookup in the target (below Milvus' 16384-row query window)
MAX_CONFLICTS = 100_000  # keys already in an append target that a run can track (they live in its checkpoint)


class Observer(Protocol):
    """Progress bars, log lines and CR status writers all watch the same events."""

    def started(self, summary: Summary, done: int) -> None: ...

    def committed(self, done: int) -> None: ...

    def phase(self, name: str) -> None: ...  # after the copy: "finish" (flush, index, load), then "verify"

    def finished(self, summary: Summary) -> None: ...

    def failed(self, error: BaseException) -> None: ...


@dataclass
class Summary:
    name: str
    source: str
    target: str
    rows: int = 0
    total: int = 0
    seconds: float = 0.0
    skipped: bool = False
    verified: str = "none"
    digest: str = ""  # KIND/DIGEST (see ``digest``) of the rows copied, which the target was proven to hold
    peak_rss_mb: float = 0.0
    phases: dict[str, float] = field(
        default_factory=dict
    )  # seconds: prepare, keys (an append's scan), copy, finish, verify
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        if self.skipped:
            return f"{self.name}: skipped, {self.target} already exists (mode skip)"
        notes = "".join(f"; {w}" for w in self.warnings)
        return (
            f"{self.name}: copied {self.rows} rows from {self.source} to {self.target} in {self.seconds:.1f}s "
            f"({self.rows_per_second:,.0f} rows/s); verified: {self.verified}{notes}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary, in the key style of the CR status (camelCase)."""
        fields = {to_camel(name): value for name, value in asdict(self).items()}
        return fields | {"rowsPerSecond": round(self.rows_per_second, 1)}


class _Clock:
    """Seconds per phase of a run, rounded, into a dict."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases, self.last = phases, time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self.last, 2)
        self.last = now


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include a parent's
    memory from before exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Reader(threading.Thread):
    """Reads and normalises batches ahead of the writers, into a bounded queue."""

    def __init__(self, batches: Iterator[Batch], depth: int) -> None:
        super().__init__(name="milvusdm-reader", daemon=True)
        self.batches = batches
        self.queue: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=depth)  # None: the end
        self.cancelled = threading.Event()

    def _put(self, item: Batch | BaseException | None) -> bool:
        while not self.cancelled.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            for batch in self.batches:
                if not self._put(batch.normalized()):
                    return
            self._put(None)
        except BaseException as error:  # handed to the consumer, raised there
            self._put(error)

    def __iter__(self) -> Iterator[Batch]:
        while (item := self.queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item


def stream(
    source: Source,
    sink: Sink,
    start: int,
    stop: int,
    batch_size: int,
    on_commit: Callable[[Batch], None],
    inflight: int = DEFAULT_INFLIGHT,
    replay: bool = False,
    conflicts: Conflicts | None = None,
) -> None:
    """Copy rows ``start..stop`` of the source into the sink (idempotently if ``replay``); rows
    whose keys the target held before are skipped or upserted as ``conflicts`` says."""
    reader = _Reader(source.batches(start, stop, batch_size), depth=inflight)
    pending: deque[tuple[Batch, Future[None]]] = deque()
    write = conflicts.write if conflicts is not None else sink.write
    reader.start()
    with interrupts.installed(), ThreadPoolExecutor(inflight, thread_name_prefix="milvusdm-writer") as writers:
        try:
            for batch in reader:
                pending.append((batch, writers.submit(write, batch, replay)))
                if len(pending) >= inflight:
                    _commit(pending, on_commit)
            while pending:
                _commit(pending, on_commit)
        except BaseException:
            _settle(pending, on_commit)
            raise
        finally:
            reader.cancelled.set()
            reader.join()


def _commit(pending: deque[tuple[Batch, Future[None]]], on_commit: Callable[[Batch], None]) -> None:
    """Commit the oldest write once it landed. It leaves ``pending`` only as it commits, and
    Ctrl-C or SIGTERM wait for the commit's end: an interrupt can never lose a landed batch
    from the checkpoint, nor leave its digest half folded."""
    batch, future = pending[0]
    future.result()
    with interrupts.held():
        pending.popleft()
        on_commit(batch)


def _settle(pending: deque[tuple[Batch, Future[None]]], on_commit: Callable[[Batch], None]) -> None:
    """After a failure: cancel writes not begun, and commit the in-order prefix that did land,
    so rollbacks and checkpoints know about every row written."""
    landed = True
    for batch, future in pending:
        if future.cancel() or not landed:
            landed = False
            continue
        landed = future.exception() is None
        if landed:
            with interrupts.held():
                on_commit(batch)
    pending.clear()


@dataclass
class Conflicts:
    """Keys of an append's source that the target held before the run, and what to do with them."""

    sink: Sink
    keys: np.ndarray
    policy: str  # skip: keep the target's rows; upsert: replace them

    def write(self, batch: Batch, replay: bool) -> None:
        clash = np.isin(batch.ids, self.keys)
        if not clash.any():
            self.sink.write(batch, replay)
        elif self.policy == "upsert":
            self.sink.write(batch, True)
        elif not clash.all():
            self.sink.write(batch.where(~clash), replay)

    def added(self, keys: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Of the keys this run wrote, those it added (not those that were there before)."""
        for chunk in keys:
            yield chunk[~np.isin(chunk, self.keys)]


def run(
    migration: MilvusMigration,
    observers: Sequence[Observer] = (),
    *,
    checkpoints: CheckpointStore | None = None,
    resume: bool | None = False,
    shard: Shard = Shard(),
    target_prepared: bool = False,
    inflight: int = DEFAULT_INFLIGHT,
    seed: str | None = None,
    proven: Callable[[Summary], str] | None = None,
) -> Summary:
    """Run a migration (or one shard of it); raises a MigrationError subclass on failure.

    With ``checkpoints``, progress is saved after every committed batch; ``resume`` continues
    from the saved checkpoint (None: if there is one), writing everything after it
    idempotently. ``target_prepared``: another shard created the target; use it as it is.
    ``seed``: the digests' keys, the same for every shard (default: random). ``proven``: a
    further check once the target is proven and before the run commits it (an overwrite's
    swap), given the summary (its rows and digest); it returns a note for ``verified``, and a
    VerificationError from it fails the run as the engine's own would.
    """
    key = fingerprint(migration)
    job: _Run | None = None
    try:
        check_manifest(migration)
        saved = _usable_checkpoint(checkpoints, key, resume, migration.spec.target)
        job = _Run(migration, observers, checkpoints, shard, inflight, seed, proven)
        try:
            job.execute(key, saved, target_prepared)
        finally:
            job.close()
    except BaseException as error:  # a bar left running would hide the error line
        if isinstance(error, MigrationError) and not error.phase:
            error.phase = job.phase if job is not None else "prepare"
            if isinstance(error, TransientError):  # resuming helps only once something was written
                written = checkpoints is not None and checkpoints.load() is not None
                error.fix += "; rerun with --resume to continue" if written else "; then run it again"
        for observer in observers:
            observer.failed(error)
        raise
    for observer in observers:
        observer.finished(job.summary)
    return job.summary


class _Run:
    """One run's source, sink, checkpoint and summary, phase by phase."""

    def __init__(
        self,
        migration: MilvusMigration,
        observers: Sequence[Observer],
        checkpoints: CheckpointStore | None,
        shard: Shard,
        inflight: int,
        seed: str | None,
        proven: Callable[[Summary], str] | None,
    ) -> None:
        self.spec = spec = migration.spec
        self.proven = proven
        self.observers, self.checkpoints, self.shard, self.inflight = observers, checkpoints, shard, inflight
        self.seed = seed or new_seed()
        self.source, self.sink = open_source(spec.source, spec.s3), open_sink(spec.target, spec.s3)
        self.summary = Summary(migration.metadata.name, self.source.describe(), self.sink.describe())
        self.began = time.monotonic()
        self.clock = _Clock(self.summary.phases)
        self.conflicts: Conflicts | None = None
        self.phase = "prepare"  # where a failure happened, for --json and the status

    def execute(self, key: str, saved: Checkpoint | None, target_prepared: bool) -> None:
        source, sink, summary = self.source, self.sink, self.summary
        source.open()  # every input check happens here, before the target is touched
        if source.identities() & sink.identities():
            raise InputError(
                f"the source and the target are the same data ({sink.describe()}): the copy would destroy it",
                "choose another target collection (or server, or file)",
            )
        if saved is not None and saved.source and saved.source != source.signature():
            raise InputError(
                f"the source {source.describe()} changed since the interrupted run (another file under the same name)",
                "restore the file that run read, or run without --resume to start over",
            )
        if saved is not None and not sink.resumable(source.schema):
            log.warning("%s lost its partial output; starting over from the first row", sink.describe())
            saved = None
        self.start, self.stop = self.shard.bounds(source.total)
        summary.total = self.stop - self.start
        summary.warnings += self._warnings()
        resuming = saved is not None or target_prepared
        try:
            summary.skipped = not sink.prepare(source.schema, resume=resuming)
            if summary.skipped:
                return
            self.state = saved or self._fresh(key)
            self.conflicts = self._conflicts()
            self.proof = self._proof()
        except InputError:
            if not resuming:
                self._abandon()  # nothing written yet: leave the target as it was
            raise
        self._save()
        for observer in self.observers:
            observer.started(summary, self.state.position - self.start)
        self.clock.lap("prepare")
        try:
            self.phase = "copy"
            self._copy(replay=saved is not None)
            self.clock.lap("copy")
            self._enter("finish")
            sink.finish()
            self.clock.lap("finish")
            self._enter("verify")
            self._verify()
            if self.shard.count == 1:  # else the last shard commits, once the whole target is proven
                sink.commit()  # Milvus Lite may refuse the index only now
            self.clock.lap("verify")
        except InputError as error:
            self._undo(error)
            raise
        if self.checkpoints is not None:
            self.checkpoints.complete()

    def _enter(self, phase: str) -> None:
        self.phase = phase
        allocator.release()
        for observer in self.observers:
            observer.phase(phase)

    def _verify(self) -> None:
        """Prove the copy before it replaces anything; a staged copy that fails is dropped."""
        conflicts = self.conflicts.keys if self.conflicts is not None else ()
        mode = self.spec.verify
        kept = self.conflicts is not None and self.conflicts.policy == "skip"
        if kept and mode in ("sample", "full"):
            mode = "ids"  # the rows kept from before hold other values than the source's
            self.summary.warnings.append(f"{len(conflicts)} rows kept as the target had them; values not compared")
        whole = self.shard.count == 1  # else other shards write too: each checks its own range
        expected = self.state.baseline + self.summary.total - len(conflicts) if whole else None
        # keys the target held already are in both digests once: look the source's ids up instead
        baseline = _baseline(self.state, self.proof.kind) if whole and not len(conflicts) else None
        proof = self.proof if mode == self.proof.mode else Proof(mode, self.source.schema, self.proof.seed)
        bounds = (self.start, self.stop)
        try:
            self.summary.verified = verify(
                proof, self.source, self.sink, bounds, expected, self.spec.verify_sample, baseline
            )
            if proof is self.proof and proof.kind:
                self.summary.digest = f"{proof.kind}/{proof.copied.text()}"
            if self.proven is not None:
                self.summary.verified += self.proven(self.summary)
        except VerificationError as error:
            if self.sink.staging:
                self.sink.abandon()
                error.fix = f"the target is unchanged (the new copy was dropped); {error.fix}"
            if self.checkpoints is not None:
                self.checkpoints.clear()  # finished, not interrupted: nothing to resume
            raise

    def _warnings(self) -> list[str]:
        schema, milvus = self.source.schema, self.spec.source.milvus
        empty = "the source holds no rows"
        if milvus is not None and milvus.filter:
            empty = f"0 rows matched source.milvus.filter {milvus.filter!r}"
        notes = {
            "vectors are decoded approximations of the originals (lossy index)": schema.lossy,
            "the source generated its keys (auto_id); the target keeps them, so later inserts into it must give keys": schema.auto_id,
            f"{empty}: the target is created empty": self.source.total == 0,
        }
        return [note for note, applies in notes.items() if applies]

    def _fresh(self, key: str) -> Checkpoint:
        """The first checkpoint; for a target that existed, its rows (for the final count check)
        and the source keys it already holds (refused, skipped or upserted, never duplicated)."""
        existed = not self.sink.created
        counted = existed and self.spec.verify != "none" and self.shard.index == 0  # before other shards write
        baseline = self.sink.count() if counted else 0
        conflicts: tuple[str, ...] = ()
        proof = Proof(self.spec.verify, self.source.schema, self.seed)
        held = ""  # the digest of what the target held, for the final check
        if existed:
            self.clock.lap("prepare")
            self.phase = "keys"
            conflicts = self._scan()
            held = f"{proof.kind}/{proof.of_target(self.sink).text()}" if counted and proof.kind else ""
            self.clock.lap("keys")
        return Checkpoint(
            key,
            position=self.start,
            rows=0,
            created=self.sink.created,
            baseline=baseline,
            conflicts=conflicts,
            seed=self.seed,
            digest_of=proof.kind,
            baseline_digest=held,
        )

    def _scan(self) -> tuple[str, ...]:
        """The source keys the target holds already: a key-only lookup, chunk by chunk."""
        found = [self.sink.existing(keys) for keys in self.source.keys(self.start, self.stop, KEY_SCAN)]
        keys = np.concatenate(found) if found else np.empty(0, np.int64)
        target, policy = self.sink.describe(), self.sink.on_conflict
        if len(keys) and policy == "fail":
            examples = ", ".join(map(str, keys[:3].tolist()))
            raise InputError(
                f"{len(keys)} of the source's keys are already in {target} (e.g. {examples}); appending would duplicate them",
                "set target.milvus.onConflict to skip (keep the target's rows) or upsert (replace them), "
                "or use mode overwrite",
            )
        if len(keys) > MAX_CONFLICTS:
            raise InputError(
                f"{len(keys)} of the source's keys are already in {target}, more than the {MAX_CONFLICTS} a run tracks",
                "use mode overwrite, or remove the overlapping rows from the source or the target",
            )
        return tuple(map(str, keys.tolist()))

    def _proof(self) -> Proof:
        """The digest of the rows committed so far: from the checkpoint, or read again from the source
        if it kept another kind (the manifest's verify mode changed between attempts)."""
        state = self.state
        bounds, size = (self.start, self.stop), self.spec.verify_sample
        proof = Proof(self.spec.verify, self.source.schema, state.seed or self.seed, bounds=bounds, sample_size=size)
        if proof.kind and state.digest_of == proof.kind and state.digest:
            proof.copied = Digest.parse(state.digest)
        elif proof.kind:
            proof.copied = proof.of_source(self.source, self.start, state.position, self.spec.batch_size)
        self.state = replace(state, seed=proof.seed, digest=proof.copied.text(), digest_of=proof.kind)
        return proof

    def _save(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.save(self.state)

    def _conflicts(self) -> Conflicts | None:
        keys = self.state.conflicts
        if not keys:
            return None
        text = self.source.schema.key is not None and self.source.schema.key.dtype == DataType.VARCHAR
        values = np.array(keys, dtype=object) if text else np.array([int(k) for k in keys], dtype=np.int64)
        return Conflicts(self.sink, values, self.sink.on_conflict)

    def _committed(self, batch: Batch) -> None:
        self.proof.fold(batch)
        self.state = replace(
            self.state, position=batch.stop, rows=self.state.rows + len(batch), digest=self.proof.copied.text()
        )
        self.summary.rows += len(batch)
        for observer in self.observers:
            observer.committed(self.state.position - self.start)
        self._save()

    def _copy(self, replay: bool) -> None:
        """Stream the rows after the checkpoint."""
        source, batch_size = self.source, self.spec.batch_size
        stream(
            source,
            self.sink,
            self.state.position,
            self.stop,
            batch_size,
            self._committed,
            self.inflight,
            replay,
            self.conflicts,
        )

    def _undo(self, error: InputError) -> None:
        """Bad data found midway: remove what this run created, or the rows it added, and forget it."""
        if self.state.created:
            self._abandon(error)
        else:
            written = self.source.keys(self.start, self.state.position, self.spec.batch_size)
            _roll_back(self.sink, self.conflicts.added(written) if self.conflicts else written, error)
        if self.checkpoints is not None:
            self.checkpoints.clear()

    def _abandon(self, cause: InputError | None = None) -> None:
        """Remove what this run created; say loudly if that failed."""
        try:
            self.sink.abandon()
        except Exception as error:  # the input error stays the one reported
            log.error("could not remove what this run created in %s: %s", self.sink.describe(), error)
            if cause is not None:
                cause.fix += f"; {self.sink.describe()} still holds rows of this migration"

    def close(self) -> None:
        """Closing counts: Milvus Lite finishes its indexes then."""
        self.sink.close()
        self.source.close()
        self.summary.seconds = time.monotonic() - self.began
        self.summary.peak_rss_mb = round(peak_rss_mb(), 1)


def check(migration: MilvusMigration, mode: str | None = None) -> str:
    """Verify an existing target against the source, without copying anything."""
    spec = migration.spec
    source, sink = open_source(spec.source, spec.s3), open_sink(spec.target, spec.s3)
    try:
        source.open()
        sink.attach(source.schema)
        whole = spec.target.mode != "append"  # else the target may hold other rows too
        proof = Proof(mode or spec.verify, source.schema, new_seed())
        if proof.kind:
            proof.copied = proof.of_source(source, 0, source.total, spec.batch_size)
        expected, baseline = (source.total, Digest()) if whole else (None, None)
        return verify(proof, source, sink, (0, source.total), expected, spec.verify_sample, baseline)
    finally:
        sink.close()
        source.close()


def check_shards(migration: MilvusMigration, shards: Sequence[Checkpoint]) -> str:
    """After the last shard of a sharded run: the whole target against the sum of every shard's
    digest, then what the shards built swapped in (an overwrite's staging copy; safe to repeat)."""
    spec, first = migration.spec, shards[0]
    source, sink = open_source(spec.source, spec.s3), open_sink(spec.target, spec.s3)
    try:
        source.open()
        sink.attach(source.schema)
        copied = sum((Digest.parse(s.digest) for s in shards if s.digest), Digest())
        proof = Proof(spec.verify, source.schema, first.seed, copied)
        whole = all(s.digest_of == proof.kind and s.seed == first.seed for s in shards)
        baseline = _baseline(first, proof.kind) if whole else None
        expected = first.baseline + source.total if whole else None
        try:
            verified = verify(proof, source, sink, (0, source.total), expected, spec.verify_sample, baseline)
        except VerificationError as error:
            if sink.staging:
                sink.abandon()
                error.fix = f"the target is unchanged (the new copy was dropped); {error.fix}"
            raise
        sink.commit()
        return verified
    finally:
        sink.close()
        source.close()


def _baseline(state: Checkpoint, kind: str) -> Digest | None:
    """The digest of what the target held before this migration (None: unknown)."""
    if state.created:
        return Digest()
    of, _, text = state.baseline_digest.partition("/")
    return Digest.parse(text) if of == kind and text else None


def _usable_checkpoint(
    checkpoints: CheckpointStore | None, key: str, resume: bool | None, target: Target
) -> Checkpoint | None:
    """The checkpoint to resume from, after refusing every mix-up of runs."""
    saved = checkpoints.load() if checkpoints is not None else None
    if resume is None:
        resume = saved is not None
    where = getattr(checkpoints, "path", "the checkpoint store")
    if saved is not None and saved.fingerprint != key:
        raise InputError(
            f"the checkpoint in {where} belongs to a migration with another source or target",
            f"restore the manifest it was made with, or delete {where} to start over",
        )
    if resume:
        if saved is None:
            raise InputError(f"nothing to resume: no checkpoint in {where}", "run without --resume")
        return saved
    if saved is not None:
        if target.mode != "overwrite":
            raise InputError(
                f"an interrupted run of this migration stopped after row {saved.position} ({where})",
                f"rerun with --resume to continue, or delete {where} to start over",
            )
        assert checkpoints is not None  # the saved checkpoint came from it
        checkpoints.clear()
    return None


def _roll_back(sink: Sink, added: Iterator[np.ndarray], cause: InputError) -> None:
    """Bad data found mid-stream in a target that existed: delete the rows this run added (never
    rows that were there before), or say loudly that we could not."""
    try:
        sink.remove(added)
    except Exception as error:  # the input error stays the one reported
        log.error("could not undo the partial copy in %s: %s", sink.describe(), error)
        cause.fix += f"; {sink.describe()} still holds rows of this migration"
