"""Milvus -> Milvus and Milvus -> HDF5 throughput and memory against the raw ceilings, in one run.

    .venv/bin/python benchmarks/milvus_source.py [--rows 200000 1000000] [--dim 128] [--repeat 5]
                                                 [--quiet 0.15] [--attempts 3]

An embedded source server, filled with N random rows for each N; then (1) the read ceiling —
pymilvus ``query_iterator`` (batch 10k, all fields) over the source; (2) the insert ceiling —
column-wise batched insert of the same rows into a target server, flush, FLAT index, load
(``throughput.ceiling``); (3) `milvusdm run` source -> target, ending in the same state, against
the slower of (1) and (2), with the default verification and with ``verify: none`` (the
default's cost, also paired: the median of each repeat's sample/none ratio, as the runs of one
mode spread more than the modes differ); (4) `milvusdm run` source -> HDF5 file, against (1).
Each step is repeated ``--repeat`` times (the ceilings first, then the runs, in a rotated order
each repeat); medians are reported.

Every timed step starts from the same state, whatever ran before it:
- a step that writes into a target gets a **new target server** (empty data folder, fresh
  process; 4-22 s to start and stop, outside the clock), so no step inherits the memory the server kept,
  or the files and message log it wrote, from the collections of the steps before;
- the machine's dirty pages are written back first (``sync``): a copy leaves ~1 GB to write
  back, which the next step would otherwise pay for;
- both servers are idle (``settle``), and so is the rest of the machine (``quiet``): the
  cores other processes used during the step are measured (``Foreign``), and a step that
  shared the machine with more than ``--quiet`` cores is run again, up to ``--attempts``
  times (the least disturbed attempt is kept; every run's foreign cores are reported).
Wall clock around everything; milvusdm runs as a child process, its peak memory the summed RSS
of its process tree (``throughput.measured``). Writes benchmarks/results/milvus_source.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymilvus import MilvusClient
from throughput import BATCH, Results, Steps, ceiling_into, fill, middle, milvusdm, rotated, verify_cost, write_h5

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


def measure(rows: int, dim: int, repeat: int, source: EmbeddedMilvus, work: Path, steps: Steps) -> list[dict]:
    """The result rows of one source size."""
    h5 = work / f"data-{rows}.h5"
    write_h5(h5, rows, dim, seed=rows)
    name = f"source_{rows}"
    fill(source.uri, h5, name, work)
    copy_from = {"milvus": {"uri": source.uri, "collection": name}}
    export = work / f"export-{rows}.h5"

    def copy(collection: str, **settings: Any) -> Callable[[EmbeddedMilvus | None], Any]:
        def step(target: EmbeddedMilvus | None) -> Any:
            assert target is not None
            return milvusdm(target.uri, copy_from, collection, work, **settings)

        return step

    def to_hdf5(_: EmbeddedMilvus | None) -> Any:
        done = milvusdm(source.uri, copy_from, f"export_{rows}", work, target={"hdf5": {"path": str(export)}})
        export.unlink()
        return done

    reads, inserts = [], []
    for _ in range(repeat):  # the ceilings first
        reads.append(steps.run(lambda _: read_ceiling(source.uri, name), target=False))
        inserts.append(steps.run(ceiling_into(h5, f"ceiling_{rows}"), target=True))
    plan: dict[str, tuple[Callable[[EmbeddedMilvus | None], Any], bool]] = {
        "sample": (copy(f"copy_{rows}"), True),
        "none": (copy(f"bare_{rows}", verify="none"), True),
        "export": (to_hdf5, False),
    }
    runs: dict[str, list] = {step: [] for step in plan}
    for turn in range(repeat):  # each repeat in another order
        for step in rotated(list(plan), turn):
            runs[step].append(steps.run(*plan[step]))
    MilvusClient(source.uri).drop_collection(name)
    read = statistics.median(r[0] for r in reads)
    insert = statistics.median(i[0] for i in inserts)
    median = {step: middle([r[0] for r in done]) for step, done in runs.items()}
    results = []
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
            "milvusdm_seconds_runs": [round(r[0][0], 2) for r in done],
            "milvusdm_peak_rss_mb": round(max(r[0][1] for r in done)),
            "foreign_cores_runs": [r[1] for r in done],
            "attempts_runs": [r[2] for r in done],
            "read_ceiling_seconds_runs": [round(r[0], 2) for r in reads],
            "insert_ceiling_seconds_runs": [round(i[0], 2) for i in inserts],
            "ceiling_foreign_cores_runs": [r[1] for r in reads + inserts],
        }
        if step != "export":
            result["milvusdm_phases_s"] = summary["phases"]
            result["milvusdm_phases_s_runs"] = [r[0][2]["phases"] for r in done]
        if step == "sample":
            result |= verify_cost([r[0] for r in done], [r[0] for r in runs["none"]])
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each, interleaved; the median is reported")
    parser.add_argument("--quiet", type=float, default=0.15, help="most cores others may use during a step")
    parser.add_argument("--attempts", type=int, default=3, help="tries of a step disturbed by others")
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "source") as source:
        work = Path(scratch)
        steps = Steps(work, args.quiet, args.attempts, source)
        for rows in args.rows:
            for result in measure(rows, args.dim, args.repeat, source, work, steps):
                results.add(result)
    results.save("milvus_source")


if __name__ == "__main__":
    main()
