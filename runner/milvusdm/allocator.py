"""How the runner's process allocates memory: set once by the command line (and so in the Job,
which runs the same command), before any thread starts.

A copy passes every batch through a few buffers of its size (10,000 x 128 floats: 5 MB each) on
three threads at once: the reader, two writers. glibc serves such buffers from mmap at first, but
raises that threshold to the size of the first one freed (up to 32 MB), so from then on they come
from each thread's own heap arena, and each arena keeps the pages of the buffers it served: at 200k
x 128 rows ~30-75 MB of free memory sat in arenas at the peaks (``mallinfo2``), a tenth to a
quarter of the process. A fixed threshold keeps buffers of 1 MiB and more on mmap, so memory freed
is returned at once, whichever thread freed it. The cost is their page faults: ~4 ms more per
fresh 5 MB buffer on the loaded 2-core machine (a batch passes through a few). Limiting the
number of arenas instead (``MALLOC_ARENA_MAX=2``) saved less and not in every case. It is set
for the whole process, so only the command line does it: a program calling ``milvusdm.run``
keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def tune() -> bool:
    """Keep large allocations on mmap (glibc only; elsewhere nothing changes). True if set."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc, not musl: its mallopt does nothing useful)
    except (OSError, AttributeError, TypeError):
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused; large buffers stay in the heap arenas")
    return done
