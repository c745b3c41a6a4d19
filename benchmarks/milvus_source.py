"""Milvus -> Milvus and Milvus -> HDF5 throughput and memory against the raw ceilings, in one run.

    .venv/bin/python benchmarks/milvus_source.py [--rows 100000 1000000] [--dim 128]

Two embedded servers (source and target). For each N: the source collection is filled with N
random rows; then (1) the read ceiling — pymilvus ``query_iterator`` (batch 10k, all fields) over
the source; (2) the insert ceiling — column-wise batched insert of the same rows into the target,
flush, FLAT index, load (``throughput.ceiling``); (3) `milvusdm run` source -> target, ending in
the same state, against the slower of (1) and (2), with the default verification and with
``verify: none`` (the default's cost); (4) `milvusdm run` source -> HDF5 file,
against (1). Wall clock around everything; milvusdm runs as a child process (its own VmHWM).
Writes benchmarks/results/milvus_source.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pymilvus import MilvusClient
from throughput import BATCH, Results, ceiling, milvusdm, write_h5

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
                read = read_ceiling(source.uri, name)
                insert = ceiling(target.uri, h5, f"ceiling_{rows}")
                copy, copy_rss, copy_summary = milvusdm(
                    target.uri, {"milvus": {"uri": source.uri, "collection": name}}, f"copy_{rows}", work
                )
                bare, bare_rss, bare_summary = milvusdm(
                    target.uri,
                    {"milvus": {"uri": source.uri, "collection": name}},
                    f"bare_{rows}",
                    work,
                    verify="none",
                )
                export = work / f"export-{rows}.h5"
                dump, dump_rss, _ = milvusdm(
                    target.uri,
                    {"milvus": {"uri": source.uri, "collection": name}},
                    f"export_{rows}",
                    work,
                    target={"hdf5": {"path": str(export)}},
                )
                export.unlink()
                MilvusClient(source.uri).drop_collection(name)
                for path, verify, seconds, limit, rss, summary in (
                    ("milvus-to-milvus", "sample", copy, max(read, insert), copy_rss, copy_summary),
                    ("milvus-to-milvus", "none", bare, max(read, insert), bare_rss, bare_summary),
                    ("milvus-to-hdf5", "sample", dump, read, dump_rss, None),
                ):
                    result = {
                        "rows": rows,
                        "path": path,
                        "verify": verify,
                        "read_ceiling_rows_per_s": round(rows / read),
                        "insert_ceiling_rows_per_s": round(rows / insert),
                        "milvusdm_rows_per_s": round(rows / seconds),
                        "ratio": round(limit / seconds, 3),
                        "milvusdm_peak_rss_mb": round(rss),
                    }
                    if summary is not None:
                        result["milvusdm_phases_s"] = summary["phases"]
                    if seconds is copy:
                        result["verify_cost_vs_none"] = round(copy / bare - 1, 3)
                    results.add(result)
    results.save("milvus_source")


if __name__ == "__main__":
    main()
