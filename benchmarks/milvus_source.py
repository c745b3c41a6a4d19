"""Milvus -> Milvus and Milvus -> HDF5 throughput and memory against the raw ceilings, in one run.

    .venv/bin/python benchmarks/milvus_source.py [--rows 100000 1000000] [--dim 128] [--repeat 3]

Two embedded servers (source and target). For each N: the source collection is filled with N
random rows; then (1) the read ceiling — pymilvus ``query_iterator`` (batch 10k, all fields) over
the source; (2) the insert ceiling — column-wise batched insert of the same rows into the target,
flush, FLAT index, load (``throughput.ceiling``); (3) `milvusdm run` source -> target, ending in
the same state, against the slower of (1) and (2), with the default verification and with
``verify: none`` (the default's cost); (4) `milvusdm run` source -> HDF5 file,
against (1). Each timed step starts once both servers are idle, and is repeated ``--repeat``
times (the ceilings first, then the runs, in a rotated order each repeat); medians are reported.
Wall clock around everything; milvusdm runs as a child process, its peak memory the summed RSS of
its process tree (``throughput.measured``). Writes benchmarks/results/milvus_source.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pymilvus import MilvusClient
from throughput import BATCH, Results, ceiling, middle, milvusdm, rotated, settle, write_h5

from milvusdm.testing import EmbeddedMilvus


def read_ceiling(uri: str, collection: str) -> float:
    """Seconds for pymilvus' query iterator to read every row with every field."""
    client = MilvusClient(uri)
    began = time.perf_counter()
    iterator = client.query_iterator(collection, batch_size=BATCH, filter="", output_fields=["*"])
    rows = 0
    while page := iterator.next():
        rows += len(page)
    iterator.close()
    seconds = time.perf_counter() - began
    client.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, interleaved; the median is reported")
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with EmbeddedMilvus(work / "source") as source, EmbeddedMilvus(work / "target") as target:
            for rows in args.rows:
                h5 = work / f"data-{rows}.h5"
                write_h5(h5, rows, args.dim, seed=rows)
                name = f"source_{rows}"
                milvusdm(
                    source.uri,
                    {"hdf5": {"path": str(h5)}},
                    name,
                    work,
                    target={"milvus": {"uri": source.uri, "collection": name, "index": {"type": "FLAT"}}},
                )
                copy_from = {"milvus": {"uri": source.uri, "collection": name}}
                export = work / f"export-{rows}.h5"
                to_file = {"hdf5": {"path": str(export)}}
                reads, inserts = [], []
                for _ in range(args.repeat):  # the ceilings first: a dropped collection leaves work behind
                    settle(source, target)
                    reads.append(read_ceiling(source.uri, name))
                    settle(source, target)
                    inserts.append(ceiling(target.uri, h5, f"ceiling_{rows}"))
                steps: dict[str, tuple[str, dict]] = {
                    "sample": (f"copy_{rows}", {}),
                    "none": (f"bare_{rows}", {"verify": "none"}),
                    "export": (f"export_{rows}", {"target": to_file}),
                }
                runs: dict[str, list] = {step: [] for step in steps}
                for turn in range(args.repeat):  # each repeat in another order, each run from idle servers
                    for step in rotated(list(steps), turn):
                        settle(source, target)
                        collection, settings = steps[step]
                        runs[step].append(milvusdm(target.uri, copy_from, collection, work, **settings))
                        export.unlink(missing_ok=True)
                MilvusClient(source.uri).drop_collection(name)
                read, insert = statistics.median(reads), statistics.median(inserts)
                median = {step: middle(done) for step, done in runs.items()}
                for path, step, verify, limit in (
                    ("milvus-to-milvus", "sample", "sample", max(read, insert)),
                    ("milvus-to-milvus", "none", "none", max(read, insert)),
                    ("milvus-to-hdf5", "export", "sample", read),
                ):
                    seconds, _, summary = median[step]
                    done = runs[step]
                    result = {
                        "rows": rows,
                        "path": path,
                        "verify": verify,
                        "read_ceiling_rows_per_s": round(rows / read),
                        "insert_ceiling_rows_per_s": round(rows / insert),
                        "milvusdm_rows_per_s": round(rows / seconds),
                        "ratio": round(limit / seconds, 3),
                        "milvusdm_seconds_runs": [round(r[0], 2) for r in done],
                        "milvusdm_peak_rss_mb": round(max(r[1] for r in done)),
                    }
                    if step != "export":
                        result["milvusdm_phases_s"] = summary["phases"]
                    if step == "sample":
                        result["verify_cost_vs_none"] = round(seconds / median["none"][0] - 1, 3)
                    results.add(result)
    results.save("milvus_source")


if __name__ == "__main__":
    main()
