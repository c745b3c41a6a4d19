"""The engine's commit order under interrupts: the checkpoint covers exactly the landed prefix."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from milvusdm.batch import Batch
from milvusdm.engine import stream


class Rows:
    """A source of four batches of ten rows."""

    def batches(self, start: int, stop: int, size: int):
        for lo in range(start, stop, size):
            yield Batch(lo, np.arange(lo, lo + size, dtype=np.int64), np.zeros((size, 2), np.float32))


class SlowFirstWrite:
    """A sink whose first write takes a while, but lands."""

    def __init__(self) -> None:
        self.landed: list[int] = []

    def write(self, batch: Batch, replay: bool = False) -> None:
        if batch.start == 0:
            time.sleep(0.6)
        self.landed.append(batch.start)


def test_an_interrupt_while_waiting_for_a_write_still_commits_it_and_keeps_the_order():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    sink, committed = SlowFirstWrite(), []
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            stream(Rows(), sink, 0, 40, 10, lambda batch: committed.append(batch.start), inflight=2)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    # the slow write was under way when the interrupt came: it landed, so it must be committed,
    # and nothing may be committed after a batch that was not
    assert sorted(sink.landed) == committed == [0, 10]


def test_a_signal_whose_handler_runs_inside_a_commit_is_raised_only_once_the_commit_is_whole():
    """A signal that came just before a commit began runs its Python handler inside it (blocking
    the signal there cannot stop that): the commit must still finish, then the interrupt rises."""
    done: list[tuple[int, str]] = []

    def commit(batch: Batch) -> None:
        done.append((batch.start, "folded"))
        if batch.start == 10:  # what the interpreter does with a signal pending from before
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        done.append((batch.start, "saved"))

    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            stream(Rows(), SlowFirstWrite(), 0, 40, 10, commit, inflight=2)
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler  # put back after the copy
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert done == [(0, "folded"), (0, "saved"), (10, "folded"), (10, "saved")]
