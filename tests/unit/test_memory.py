"""Memory a run does not need to hold (peak RSS ≤ 300 MB is a target, issues 16 and 18): modules a
run of other formats does not import, and the HDF5 source's chunk cache sized to the file's chunks."""

import ctypes
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from milvusdm.sources.hdf5 import Hdf5Source
from milvusdm.spec import Hdf5Source as Hdf5Spec
from tests.conftest import REPO

PARQUET_AND_MILVUS = (
    "milvusdm.cli",
    "milvusdm.engine",
    "milvusdm.instance",
    "milvusdm.sources.parquet",
    "milvusdm.sinks.parquet",
    "milvusdm.sources.milvus",
    "milvusdm.sinks.milvus",
)


def test_parquet_and_milvus_runs_import_neither_h5py_nor_boto3():
    code = f"import json, sys; import {', '.join(PARQUET_AND_MILVUS)}; print(json.dumps(sorted(sys.modules)))"
    path = os.pathsep.join([str(REPO / "runner"), str(REPO / "operator")])
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, check=True
    ).stdout
    loaded = {m.split(".")[0] for m in json.loads(out)}
    assert "pyarrow" in loaded and "pymilvus" in loaded
    assert not loaded & {"h5py", "boto3", "botocore"}, (
        "~10 MB (h5py) and ~8 MB (boto3) a run without HDF5 or S3 never uses"
    )


def _chunk_cache(path, **layout):
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=np.zeros((1000, 16), np.float32), chunks=(100, 16), **layout)
        f.create_dataset("ids", data=np.arange(1000), chunks=(100,), **layout)
    source = Hdf5Source(Hdf5Spec(path=str(path)))
    source.open()
    try:
        file = source.files[0]
        assert sum(len(b) for b in source.batches(0, source.total, 250)) == 1000
        return [d.id.get_access_plist().get_chunk_cache()[1] for d in (file.vectors, file.ids)]
    finally:
        source.close()


def test_hdf5_chunk_cache_holds_one_compressed_chunk_per_dataset_and_no_plain_one(tmp_path):
    assert _chunk_cache(tmp_path / "gzip.h5", compression="gzip") == [100 * 16 * 4, 100 * 8]
    assert _chunk_cache(tmp_path / "plain.h5") == [0, 0]


def _fresh_process(code: str):
    """What ``code`` prints as JSON, run in a process of its own: the allocator is set once per process."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO / "runner")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


TUNED = """
import ctypes, json, threading, numpy as np
from milvusdm import allocator
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
tuned = allocator.tune()
seen = []
def batch():  # a batch-sized buffer on a thread of its own, as the reader and writers have
    buffer = np.ones(5 << 20, np.uint8)
    info = libc.mallinfo2()
    seen.append([info.uordblks, info.hblkhd, info.arena])
    del buffer
for _ in range(3):
    thread = threading.Thread(target=batch); thread.start(); thread.join()
print(json.dumps([tuned, seen]))
"""


@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc >= 2.33 reports the main arena")
def test_tuned_allocator_serves_every_thread_from_one_arena_and_reuses_its_buffers():
    tuned, seen = _fresh_process(TUNED)
    assert tuned
    (used, mapped, arena), *later = seen
    # a thread's 5 MB buffer is in the main arena (mallinfo2 counts no other), not mmapped on its own
    assert used >= 5 << 20 and mapped < 5 << 20
    # the next threads' buffers reuse its pages: the arena does not grow
    assert all(grown == arena for _, _, grown in later)


RELEASED = """
import json, numpy as np
from milvusdm import allocator
def resident():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) >> 10
allocator.release()  # before tune: nothing to do
allocator.tune()
buffers = [np.ones(5 << 20, np.uint8) for _ in range(20)]  # a phase's batch-sized buffers, from the arena
del buffers[:-1]  # all freed but the last, which holds the top of the heap: no trim at free
before = resident()
allocator.release()
print(json.dumps([before, resident()]))
"""


def test_release_between_phases_returns_the_freed_buffers_below_the_top_of_the_heap():
    before, after = _fresh_process(RELEASED)
    assert before - after >= 80, (before, after)  # 19 freed buffers of 5 MB
