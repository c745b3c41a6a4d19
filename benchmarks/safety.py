"""What the data-safety guarantees cost, on one server, with the manifest defaults (batchSize 10000,
verify sample, AUTOINDEX):

    .venv/bin/python benchmarks/safety.py [--rows 200000] [--dim 128]

(1) ``mode: create`` into a fresh collection, then (2) ``mode: overwrite`` of the same rows over it
(blue/green: built under a staging name, verified, renamed in, the old collection dropped): the
ratio is the overwrite's cost. Each starts once the server is idle (an index build of the run
before must not slow the next), and the server's CPU seconds per run are reported beside the
wall clock: with HNSW builds of ~130 s on two cores, one run's wall clock is noisy. (3) ``mode: append`` of N new keys to a collection holding N rows:
the ``keys`` phase is the scan of the target for the source's keys, as a share of the run.
(4) Byte-sized requests: 600 rows x 32768 dims (78 MB, over gRPC's 64 MB cap) in the default batch
(split into requests below 32 MB) against batchSize 200 (no split needed). The raw pymilvus
ceiling (insert, flush, FLAT index, load) runs in the same process for scale. Wall clock, child
processes; writes benchmarks/results/safety.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from throughput import Results, ceiling, cpu_seconds, milvusdm, settle, write_h5

from milvusdm.testing import EmbeddedMilvus


def run(uri: str, path: Path, collection: str, work: Path, spec: dict | None = None, **target) -> tuple[float, dict]:
    """Seconds and JSON summary of `milvusdm run` with the manifest defaults (AUTOINDEX)."""
    into = {"milvus": {"uri": uri, "collection": collection, **target}}
    seconds, _, summary = milvusdm(uri, {"hdf5": {"path": str(path)}}, collection, work, target=into, spec=spec)
    return seconds, summary


def timed(server: EmbeddedMilvus, *args, **target) -> tuple[float, dict, float]:
    """``run`` from an idle server: (seconds, summary, the server's CPU seconds)."""
    settle(server)
    before = cpu_seconds(server)
    seconds, summary = run(*args, **target)
    return seconds, summary, cpu_seconds(server) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    rows, results = args.rows, Results()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "milvus") as server:
        work = Path(scratch)
        first, second = work / "a.h5", work / "b.h5"
        write_h5(first, rows, args.dim, seed=1)
        write_h5(second, rows, args.dim, seed=2)
        with h5py.File(second, "r+") as f:
            f["ids"][:] = np.arange(rows, 2 * rows)
        raw = ceiling(server.uri, first, "ceiling")
        create, summary, create_cpu = timed(server, server.uri, first, "items", work)
        overwrite, again, overwrite_cpu = timed(server, server.uri, first, "items", work, mode="overwrite")
        assert again["rows"] == rows, again
        results.add(
            {
                "case": "overwrite vs create",
                "rows": rows,
                "create_s": round(create, 2),
                "overwrite_s": round(overwrite, 2),
                "ratio": round(overwrite / create, 3),
                "create_server_cpu_s": round(create_cpu, 1),
                "overwrite_server_cpu_s": round(overwrite_cpu, 1),
                "cpu_ratio": round(overwrite_cpu / create_cpu, 3),
                "create_phases_s": summary["phases"],
                "overwrite_phases_s": again["phases"],
                "ceiling_s": round(raw, 2),
            }
        )

        append, added = run(server.uri, second, "items", work, mode="append")
        assert added["verified"].endswith(f"count {2 * rows})"), added
        scan = added["phases"].get("keys", 0.0)
        results.add(
            {
                "case": "append key scan",
                "rows": rows,
                "target_rows": rows,
                "append_s": round(append, 2),
                "keys_s": scan,
                "share": round(scan / append, 3),
                "phases_s": added["phases"],
            }
        )

        wide = work / "wide.h5"
        with h5py.File(wide, "w") as f:
            f["embeddings"] = np.random.default_rng(3).random((600, 32768), dtype=np.float32)
        split, _ = run(server.uri, wide, "wide_split", work)
        small, _ = run(server.uri, wide, "wide_small", work, spec={"batchSize": 200})
        results.add(
            {
                "case": "byte-sized requests",
                "rows": 600,
                "dim": 32768,
                "default_batch_split_s": round(split, 2),
                "batch_200_s": round(small, 2),
                "ratio": round(split / small, 3),
            }
        )
    results.save("safety")


if __name__ == "__main__":
    main()
