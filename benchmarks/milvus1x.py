"""A Milvus 1.x data directory -> Milvus 2.x with `milvusdm run`, against the raw pymilvus ceiling, in one run.

    PYTHONPATH=runner .venv/bin/python benchmarks/milvus1x.py [--rows 1000000] [--dim 128] [--segments 4]

Writes a 1.x directory (SQLite meta; ``--segments`` segments, 1% of the first one's rows deleted
so the live total is ``--rows``), then on one embedded server, exactly as ``throughput.py`` does
for HDF5: (1) the ceiling (``throughput.ceiling``: column-wise insert of as many rows from memory,
flush, FLAT index, load); (2) `milvusdm run` of the directory with the manifest's defaults
(batchSize 10000, verify sample) but ``index: {type: FLAT}``, the ceiling's index, as a child
process whose process tree's peak RSS is sampled from outside. Both clocks are wall clock around
the whole thing. Prints one JSON line per result and writes benchmarks/results/milvus1x.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from throughput import Results, ceiling, milvusdm, write_h5

from milvusdm.testing import EmbeddedMilvus
from milvusdm.testing.milvus1x_writer import Milvus1xWriter


def write_directory(root: Path, rows: int, dim: int, segments: int) -> float:
    """Seconds to write the directory: ``rows`` live rows, float32, L2, ids above 2**53."""
    began, rng = time.perf_counter(), np.random.default_rng(rows)
    writer = Milvus1xWriter(root)
    table = writer.collection("items", dim, metric=1)
    per, first = -(-rows // segments), 2**53
    for number in range(segments):
        live = min(per, rows - number * per)
        deleted = rng.choice(live, size=live // 100, replace=False) if number == 0 else np.empty(0, dtype=np.int64)
        total = live + len(deleted)
        ids = first + np.arange(total, dtype=np.int64)
        writer.segment(table, ids, rng.random((total, dim), dtype=np.float32), deleted=deleted)
        first += total
    writer.write_sqlite()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--segments", type=int, default=4)
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "milvus") as server:
        work = Path(scratch)
        written = write_directory(work / "legacy", args.rows, args.dim, args.segments)
        write_h5(work / "ceiling.h5", args.rows, args.dim, seed=args.rows)
        raw = ceiling(server.uri, work / "ceiling.h5", "ceiling")
        source = {"milvus1x": {"path": str(work / "legacy"), "collection": "items"}}
        ours, rss, summary = milvusdm(server.uri, source, "items", work)
        assert summary["rows"] == args.rows and summary["verified"].startswith("sample"), summary
        results.add(
            {
                "rows": args.rows,
                "dim": args.dim,
                "segments": args.segments,
                "write_directory_s": round(written, 1),
                "ceiling_s": round(raw, 1),
                "milvusdm_s": round(ours, 1),
                "ratio": round(raw / ours, 3),
                "ceiling_rows_per_s": round(args.rows / raw),
                "milvusdm_rows_per_s": round(args.rows / ours),
                "peak_rss_mb": round(rss),
                "own_vmhwm_mb": summary["peakRssMb"],
                "milvusdm_phases_s": summary["phases"],
                "verified": summary["verified"],
            }
        )
    results.save("milvus1x")


if __name__ == "__main__":
    main()
