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
