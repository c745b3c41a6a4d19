"""One pod at a time per shard: a lease in the shard's status entry, like coordination.k8s.io Leases.

A runner takes its entry when it names no holder, its own pod, or a holder whose lease expired
(``renewTime`` + ``leaseSeconds`` in the past), by a patch conditional on the resourceVersion it
read (409 Conflict: read again). Every later write of the entry renews it the same way, and a
heartbeat renews it whenever nothing was written for a third of the lease, also while the finish
phase waits minutes on one server call. A runner that finds another holder in its entry, or could
not renew for two thirds of the lease (another pod may take over once the whole has passed), has
lost it: it stops before committing more. Pods' clocks must agree to well within the lease (NTP).
"""

from __future__ import annotations

import datetime
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from milvusdm.checkpoint import ShardStatus
from milvusdm.errors import LeaseHeld, LeaseLost

log = logging.getLogger(__name__)
RENEW = 1 / 3  # renew when nothing was written for this part of the lease
DEADLINE = 2 / 3  # lost when no renewal succeeded for this part of it


def timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def expires(entry: ShardStatus) -> datetime.datetime | None:
    """When the entry's lease ends (None: nobody holds it)."""
    if not entry.holder or not entry.renew_time:
        return None
    renewed = datetime.datetime.fromisoformat(entry.renew_time)
    return renewed + datetime.timedelta(seconds=entry.lease_seconds)


def blocking(entry: ShardStatus | None, me: str, now: datetime.datetime) -> datetime.datetime | None:
    """When another holder's fresh lease on ``entry`` expires; None if ``me`` may take it."""
    if entry is None or not entry.holder or entry.holder == me:
        return None
    until = expires(entry)
    return until if until is not None and until > now else None


class Lease:
    """This process's lease on one status entry: whether it holds it, when it last renewed it."""

    def __init__(self, what: str, holder: str, seconds: int) -> None:
        self.what, self.holder, self.seconds = what, holder, seconds  # what: e.g. "shard 0 of ns/name"
        self.held = False
        self.renewed = 0.0  # time.monotonic() before the read of the last write that renewed it
        self.lost: LeaseLost | None = None

    def refuse(self, entry: ShardStatus | None, now: datetime.datetime) -> None:
        """Raise LeaseHeld if another pod's lease on ``entry`` is fresh."""
        if (until := blocking(entry, self.holder, now)) is None:
            return
        assert entry is not None
        left = (until - now).total_seconds()
        raise LeaseHeld(
            f"pod {entry.holder} is running {self.what}: its lease expires at "
            f"{until.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {left:.0f} s)",
            f"none needed: the Job retries this pod, which takes over once {entry.holder} stops renewing",
        )

    def stamped(self, entry: ShardStatus, now: datetime.datetime) -> ShardStatus:
        """``entry`` as this holder renews it now."""
        return replace(entry, holder=self.holder, renew_time=timestamp(now), lease_seconds=self.seconds)

    def taken(self, entry: ShardStatus | None) -> LeaseLost | None:
        """The error to stop with if the freshly read ``entry`` shows another holder (it took over)."""
        if not self.held or entry is None or entry.holder == self.holder:
            return None
        who = f"pod {entry.holder}" if entry.holder else "nobody (it was released)"
        return self.lose(f"the lease on {self.what} was taken over: {who} holds it now")

    def lose(self, problem: str) -> LeaseLost:
        if self.lost is None:
            self.lost = LeaseLost(problem, "none needed: the pod holding it continues from the checkpoint")
            self.held = False
        return self.lost

    def check(self) -> None:
        """Raise LeaseLost once the lease is lost, or too old to be sure it is still ours."""
        if self.held and time.monotonic() - self.renewed > self.seconds * DEADLINE:
            self.lose(
                f"could not renew the lease on {self.what} for {time.monotonic() - self.renewed:.0f} s "
                f"(of {self.seconds} s): another pod may take over"
            )
        if self.lost is not None:
            raise self.lost


class Heartbeat:
    """Renews a lease from a thread beside the copy; once it is lost, interrupts the main thread
    (SIGINT, held back while a batch commits) so that a long server call stops too."""

    def __init__(self, lease: Lease, renew: Callable[[], None]) -> None:
        self.lease, self.renew = lease, renew
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="milvusdm-lease", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()

    def _beat(self) -> None:
        lease = self.lease
        while not self.stopping.wait(min(1.0, lease.seconds * RENEW / 3)):
            if lease.lost is None and time.monotonic() - lease.renewed >= lease.seconds * RENEW:
                try:
                    self.renew()
                except LeaseLost:
                    pass
                except Exception as error:  # the API may come back before the deadline
                    log.warning("could not renew the lease on %s: %s", lease.what, error)
            try:
                lease.check()
            except LeaseLost as error:
                if not self.stopping.is_set():
                    log.error("%s; stopping", error.problem)
                    main = threading.main_thread().ident
                    if main is not None:
                        signal.pthread_kill(main, signal.SIGINT)
                return
