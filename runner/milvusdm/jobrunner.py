"""The runner inside a Job: read its MilvusMigration, keep checkpoints and progress in its status.

Each shard writes only ``status.shards.<index>`` (a map key, so a merge-patch never clobbers a
sibling) plus the totals it computes from the freshest object; patches are throttled. A restarted
pod resumes from its shard's entry; shard N of an Indexed Job is ``JOB_COMPLETION_INDEX``. The
entry carries a lease (``lease``): a second pod of the same shard is refused while the first runs.

Many collections: the first pod plans the run into the status, an entry per collection
(``status.shards.<database.collection>``, phase Pending, with the index of the pod that copies
it, balanced by rows), so the status shows the whole run from the start and every pod copies
its own share, one collection after another.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from kubernetes.client.rest import ApiException

from milvusdm import engine, env, instance
from milvusdm.checkpoint import Checkpoint, EntryPhase, Shard, ShardStatus
from milvusdm.errors import InputError, Interrupted, LeaseHeld, LeaseLost, MigrationError, TransientError
from milvusdm.kube import MigrationResource
from milvusdm.kube import now as kube_now
from milvusdm.lease import Heartbeat, Lease, utcnow
from milvusdm.spec import MigrationStatus, MilvusMigration

log = logging.getLogger(__name__)
CONFLICTS = 20  # conditional writes refused in a row (other shards, the operator) before giving up
PHASES: dict[str, EntryPhase] = {"finish": "Finishing", "verify": "Verifying"}  # the engine's, as entries show them


def run(reference: str, observers: Sequence[engine.Observer] = ()) -> engine.Summary | instance.RunSummary:
    """``milvusdm run --resource NAMESPACE/NAME``: the spec, checkpoint and status all live in the CR."""
    resource = MigrationResource(reference)
    migration = resource.migration()
    shard = Shard(env.shard_index(), migration.spec.parallelism)
    status = ResourceStatus(resource, shard, interval=env.status_interval())
    stores = ResourceStores(resource, shard, env.status_interval())
    try:
        if migration.spec.source.many:
            return _run_collections(migration, stores, status, observers)
        return _run_shard(migration, resource, shard, status, observers)
    except KeyboardInterrupt:  # the heartbeat interrupts the main thread once the lease is lost
        if lost := next((s.lease.lost for s in [status, *stores.statuses.values()] if s.lease.lost), None):
            raise lost from None
        raise


def _run_shard(
    migration: MilvusMigration,
    resource: MigrationResource,
    shard: Shard,
    status: ResourceStatus,
    observers: Sequence[engine.Observer],
) -> engine.Summary:
    if shard.index > 0:
        try:
            wait_for_first_shard(resource, lambda s: bool((first := s.shards.get("0")) and first.fingerprint))
        except MigrationError as error:
            status.failed(error)
            raise
    summary = engine.run(  # tells the status (one of its observers) of its own failures
        migration,
        [*observers, status],
        checkpoints=status,
        resume=None,
        shard=shard,
        target_prepared=shard.index > 0,
        seed=resource.seed(),
    )
    if shard.count > 1 and (shards := status.completed_shards(shard.count)):  # the last shard to finish
        try:
            summary.verified = engine.check_shards(migration, shards)
        except MigrationError as error:
            status.failed(error)
            raise
        status.finished(summary)
    return summary


def _run_collections(
    migration: MilvusMigration,
    stores: ResourceStores,
    status: ResourceStatus,
    observers: Sequence[engine.Observer],
) -> instance.RunSummary:
    """Many collections: one status key per collection (``database.collection``: its phase,
    checkpoint, counts and lease); a restarted pod skips the finished ones and resumes the
    interrupted one. The last pod to finish writes the whole run's result."""
    try:
        summary = instance.run(migration, observers, stores=stores, resume=True)
    except MigrationError as error:
        status.failed(error)
        raise
    entries = stores.resource.status().shards
    if all(entry.phase == "Succeeded" for entry in entries.values()):
        rows = sum(entry.copied for entry in entries.values())
        message = f"{migration.metadata.name}: {len(entries)} collections, {rows} rows copied and verified"
        status.flush(verified=f"{migration.spec.verify} ({len(entries)} collections)", message=message)
    return summary


class ResourceStatus:
    """Checkpoint store and observer for one shard (or one collection), backed by the resource's
    status; the runner holds the entry's lease (see ``lease``) from ``load`` to its end."""

    def __init__(
        self, resource: MigrationResource, shard: Shard, interval: float = 1.0, key: str | None = None
    ) -> None:
        self.resource, self.key, self.interval = resource, key or str(shard.index), interval
        self.collection = key is not None  # its result goes into its entry; the run's, at the end
        what = f"collection {key}" if key else f"shard {self.key}"
        self.lease = Lease(f"{what} of {resource.namespace}/{resource.name}", env.holder(), env.lease_seconds())
        self.heartbeat = Heartbeat(self.lease, self.renew)
        self.lock = threading.Lock()  # the heartbeat and the copy write one entry
        self.mine = ShardStatus()
        self.last_patch = 0.0
        self.describe: dict[str, str] = {}  # source and target, for the printer columns

    # -- CheckpointStore ------------------------------------------------------------------

    def load(self) -> Checkpoint | None:
        saved = self.resource.status().shards.get(self.key) if self.lease.held else self._acquire()
        if saved is None or not saved.fingerprint or saved.completed:
            if saved is not None:  # planned, or done before: a fresh start in the same place of the plan
                self.mine = ShardStatus(total=saved.total, job_index=saved.job_index)
            return None
        self.mine = saved
        return saved.checkpoint()

    def save(self, checkpoint: Checkpoint) -> None:
        self.lease.check()  # a lost lease stops the run before it commits more
        self.mine = self.mine.at(checkpoint)
        if time.monotonic() - self.last_patch >= self.interval:
            self.flush()

    def clear(self) -> None:  # no checkpoint, and not completed either
        self.mine = ShardStatus(total=self.mine.total, phase=self.mine.phase, job_index=self.mine.job_index)
        self.flush()

    def complete(self) -> None:
        self.mine = replace(self.mine, completed=True)  # written (and the lease released) by ``finished``

    def completed_shards(self, count: int) -> list[Checkpoint] | None:
        """Every shard's final checkpoint once all ``count`` have completed (else None). Each shard
        reads this after writing its own completion, so the last to finish sees them all."""
        shards = self.resource.status().shards
        if not all(str(i) in shards and shards[str(i)].completed for i in range(count)):
            return None
        return [shards[str(i)].checkpoint() for i in range(count)]

    # -- Observer -------------------------------------------------------------------------

    def started(self, summary: engine.Summary, done: int) -> None:
        self.mine = replace(self.mine, total=summary.total, copied=done, phase="Copying")
        self.describe = {"source": summary.source, "target": summary.target}
        self.flush()

    def committed(self, done: int) -> None:
        self.mine = replace(self.mine, copied=done)

    def phase(self, name: str) -> None:
        self.lease.check()
        self.mine = replace(self.mine, phase=PHASES[name])
        self.flush(message=f"{self._about()}copied; {name} phase")

    def finished(self, summary: engine.Summary) -> None:
        line = summary.line()
        self.mine = replace(self.mine, phase="Succeeded", verified=summary.verified, message=line)
        result = {"message": f"{self._about()}{line}"}
        if not self.collection:  # a collection's verification is in its entry; the run's comes at the end
            result["verified"] = summary.verified
        self.release(**result)

    def failed(self, error: BaseException) -> None:
        if isinstance(error, LeaseHeld) or self.lease.lost is not None:
            self.heartbeat.stop()
            return  # the entry is another pod's: not a word into it
        reason = error.reason if isinstance(error, MigrationError) else Interrupted.reason
        line = str(error) or type(error).__name__
        self.mine = replace(self.mine, phase="Failed", message=line)
        self.release(message=f"{self._about()}{line}", failure_reason=reason)

    def _about(self) -> str:
        return f"{self.key}: " if self.collection else ""

    # -- the lease ------------------------------------------------------------------------

    def _acquire(self) -> ShardStatus | None:
        """Take the entry's lease (refused while another pod's is fresh); the entry as it was."""
        for _ in range(CONFLICTS):
            status, version = self.resource.versioned_status()
            saved, now = status.shards.get(self.key), utcnow()
            self.lease.refuse(saved, now)
            began = time.monotonic()
            try:
                entry = self.lease.stamped(saved or ShardStatus(), now)
                self.resource.patch_status(MigrationStatus(shards={self.key: entry}), version)
            except ApiException as error:
                if error.status == 409:
                    continue
                raise TransientError(f"cannot write the status of {self.lease.what}: {error.reason}", "") from None
            self.lease.held, self.lease.renewed = True, began
            self.heartbeat = Heartbeat(self.lease, self.renew)
            self.heartbeat.start()
            return saved
        raise TransientError(f"the status of {self.lease.what} kept changing while taking its lease", "")

    def renew(self) -> None:
        """The heartbeat: write the entry as it is (a newer checkpoint too), renewing the lease."""
        self._write(totals=False)

    def release(self, **result: Any) -> None:
        """The last write of the entry: nobody holds it after (if this pod still did)."""
        self.heartbeat.stop()
        self.flush(release=True, **result)
        self.lease.held = False

    # -- writing --------------------------------------------------------------------------

    def flush(self, release: bool = False, **result: Any) -> None:
        """Patch this shard's entry (renewing its lease) and the totals over all shards reported so far."""
        try:
            self._write(release=release, **result)
        except LeaseLost:
            raise
        except (ApiException, MigrationError, OSError) as error:  # progress reports must not stop the copy
            log.warning("could not update the MilvusMigration status: %s", error)

    def _write(self, totals: bool = True, release: bool = False, **result: Any) -> None:
        """One patch from a fresh read; while this pod holds the lease, conditional on the object's
        resourceVersion (409 Conflict: read again) and refused if another pod took the entry."""
        held = self.lease.held
        with self.lock:
            for _ in range(CONFLICTS):
                status, version = self.resource.versioned_status()
                if held and (lost := self.lease.taken(status.shards.get(self.key))):
                    raise lost
                began, now = time.monotonic(), utcnow()
                fields: dict[str, Any] = dict(result)
                if held:
                    entry = self.lease.stamped(self.mine, now)
                    fields["shards"] = {self.key: replace(entry, holder="") if release else entry}
                if totals:
                    shards = {**status.shards, **fields.get("shards", {})}
                    copied, total = sum(s.copied for s in shards.values()), sum(s.total for s in shards.values())
                    progress = f"{100 * copied // total if total else 100}%"
                    fields |= {"rows_copied": copied, "total_rows": total, "progress": progress}
                    fields |= {"last_batch_time": kube_now(), **self.describe}
                try:
                    self.resource.patch_status(MigrationStatus(**fields), version if held else None)
                except ApiException as error:
                    if held and error.status == 409:
                        continue
                    raise
                if held:
                    self.lease.renewed = began
                self.last_patch = time.monotonic()
                return
        raise TransientError(f"the status of {self.lease.what} kept changing ({CONFLICTS} conflicts in a row)", "")


class ResourceLedger:
    """The finished collections of a many-collection run: their status entries are ``completed``."""

    def __init__(self, resource: MigrationResource) -> None:
        self.resource = resource
        self.done: dict[str, dict[str, Any]] = {}

    def open(self, resume: bool | None) -> None:
        for key, saved in self.resource.status().shards.items():
            if saved.completed:
                self.done[key] = {
                    "summary": {"name": key, "source": "", "target": "", "rows": saved.rows, "total": saved.total}
                }

    def record(self, key: str, summary: engine.Summary, entry: dict[str, Any]) -> None:
        self.done[key] = {"summary": asdict(summary), "entry": entry}

    def clear(self) -> None:
        """The status keeps each collection's entry: it is the run's record."""


class ResourceStores:
    """``instance.Stores`` in the status: one ResourceStatus per collection, keyed by its name."""

    def __init__(self, resource: MigrationResource, shard: Shard, interval: float) -> None:
        self.resource, self.shard, self.interval = resource, shard, interval
        self.ledger = ResourceLedger(resource)
        self.statuses: dict[str, ResourceStatus] = {}

    def claim(self, items: list[instance.Item]) -> list[instance.Item]:
        """This pod's collections, from the plan in the status (the first pod writes it)."""
        if self.shard.index == 0:
            planned = self._plan(items)
        else:
            planned = wait_for_first_shard(self.resource, lambda status: bool(status.shards)).shards
        here = {item.key for item in items}
        gone = [k for k, e in planned.items() if e.job_index == self.shard.index and not e.completed and k not in here]
        if gone:
            raise InputError(
                f"collection {', '.join(gone)} was planned for this run but is no longer at the source",
                "recreate it, or delete this MilvusMigration and apply it again to plan anew",
            )
        return [item for item in items if item.key in planned and planned[item.key].job_index == self.shard.index]

    def _plan(self, items: list[instance.Item]) -> dict[str, ShardStatus]:
        """The plan in the status: written once, each collection given to a pod by ``balance``;
        collections that appear after it (a restarted first pod finds them) go to the first pod."""
        for _ in range(CONFLICTS):
            status, version = self.resource.versioned_status()
            new = [item for item in items if item.key not in status.shards]
            if not new:
                return status.shards
            pods = instance.balance([i.rows for i in new], self.shard.count) if not status.shards else [0] * len(new)
            entries = {
                i.key: ShardStatus(phase="Pending", total=i.rows, job_index=p) for i, p in zip(new, pods, strict=True)
            }
            planned = {**status.shards, **entries}
            total = sum(entry.total for entry in planned.values())
            try:
                self.resource.patch_status(MigrationStatus(shards=entries, total_rows=total), version)
            except ApiException as error:
                if error.status == 409:
                    continue
                raise TransientError(f"cannot write the plan into the status: {error.reason}", "") from None
            return planned
        raise TransientError("the status kept changing while writing the plan", "")

    def _status(self, key: str) -> ResourceStatus:  # one per collection, its lease taken when it starts
        if key not in self.statuses:
            self.statuses[key] = ResourceStatus(self.resource, Shard(), self.interval, key=key)
        return self.statuses[key]

    def checkpoints(self, item: instance.Item) -> ResourceStatus:
        return self._status(item.key)

    def observers(self, item: instance.Item) -> list[engine.Observer]:
        return [self._status(item.key)]


def wait_for_first_shard(
    resource: MigrationResource, ready: Callable[[MigrationStatus], bool], timeout: float = 600, poll: float = 2.0
) -> MigrationStatus:
    """Pods after the first wait for what it does first: prepare the target that they write
    into (one collection), or plan which collections each copies (many)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(status := resource.status()):
            return status
        time.sleep(poll)
    raise TransientError(
        "the first pod (index 0) has not prepared the run yet", "check the pod of index 0; this pod will be retried"
    )
