"""How the runner's process allocates memory: set once by the command line (and so in the Job,
which runs the same command), before any thread starts.

A copy passes every batch through a few buffers of its size (10,000 x 128 floats: 5 MB each) on
three threads at once, the reader and two writers, and gRPC's threads serialise and receive
messages of that size. glibc gives each thread its own heap arena, and each arena keeps the pages
of the buffers it served: at 200k x 128 rows ~30-75 MB of free memory sat in arenas at the peaks
(``mallinfo2``). Serving such buffers from mmap instead returns them at once but makes the kernel
map and zero every fresh buffer again: at 1M x 128 rows Milvus -> Milvus, 1.2M page faults and
~3.3 s of kernel time, on the cores the two servers need. So the runner uses **one arena** for
every thread: a buffer one thread frees is the next one any thread gets, its pages already
mapped. Buffers up to 32 MB (glibc's largest threshold) come from it; free memory at its top
beyond 64 MB goes back to the system. Measured at 1M rows Milvus -> Milvus: 47k page faults,
0.65 s of kernel time, peak RSS 236-249 MB (mmap: 222 MB; glibc's defaults: 282-287 MB). Threads
wait on one lock only for large blocks: small ones come from each thread's cache. It is set for
the whole process, so only the command line does it: a program calling ``milvusdm.run`` keeps its
own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
SETTINGS = (  # glibc's mallopt parameters (malloc.h): (name, number, value)
    ("M_ARENA_MAX", -8, 1),
    ("M_MMAP_THRESHOLD", -3, 32 << 20),
    ("M_TRIM_THRESHOLD", -1, 64 << 20),
)


_tuned: ctypes.CDLL | None = None  # glibc, once ``tune`` has set it up


def tune() -> bool:
    """One arena for every thread, large buffers reused (glibc only; elsewhere nothing changes).
    True if every setting took."""
    global _tuned
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc, not musl: its mallopt does nothing useful)
    except (OSError, AttributeError, TypeError):
        return False
    refused = [setting for setting, number, value in SETTINGS if not mallopt(number, value)]
    if refused:
        log.debug("mallopt refused %s; the allocator keeps glibc's defaults there", ", ".join(refused))
    _tuned = libc
    return not refused


def release() -> None:
    """Return the arena's free pages to the system, between a run's phases: a phase's buffers
    differ from the last one's, and the freed ones would stay resident beside them (a 1M-row
    Milvus -> Parquet export peaked 20-30 MB higher in its finish and verify phases). Only after
    ``tune``: a program calling ``milvusdm.run`` keeps its own allocator."""
    if _tuned is not None:
        _tuned.malloc_trim(0)
