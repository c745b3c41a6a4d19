"""`milvusdm dump` and `milvusdm restore` of several collections against the raw ceilings, in one run.

    .venv/bin/python benchmarks/dump_restore.py [--rows 1000000] [--collections 4] [--dim 128]

Two embedded servers. ROWS random rows are spread over COLLECTIONS collections on the source
(loaded by milvusdm from HDF5, FLAT index). Then (1) the read ceiling: pymilvus ``query_iterator``
(batch 10k, all fields) over every collection; (2) `milvusdm dump` of the whole instance to a local
folder (defaults: verify sample; includes the SHA-256 and row digest of every file), against (1);
(3) the insert ceiling: column-wise batched insert of the same rows into the target, flush, FLAT
index, load (``throughput.ceiling``); (4) `milvusdm restore` of the dump (defaults: SHA-256 check
first, verify sample), ending in the same state, against (3). milvusdm runs as a child process;
peak RSS is its process tree's, sampled from outside (``throughput.measured``). Writes benchmarks/results/dump_restore.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from milvus_source import read_ceiling
from pymilvus import MilvusClient
from throughput import Results, ceiling, fill, measured, write_h5

from milvusdm.testing import EmbeddedMilvus


def cli(*arguments: str) -> tuple[float, float, dict]:
    """(seconds, peak process-tree RSS in MB, JSON summary) of a milvusdm command in a child process."""
    seconds, peak, output = measured([str(Path(sys.executable).with_name("milvusdm")), *arguments, "--json", "-q"])
    return seconds, peak, json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--collections", type=int, default=4)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    results = Results()
    each = args.rows // args.collections
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        with EmbeddedMilvus(work / "source") as source, EmbeddedMilvus(work / "target") as target:
            files = {}
            for number in range(args.collections):
                name = f"part_{number}"
                files[name] = work / f"{name}.h5"
                write_h5(files[name], each, args.dim, seed=number)
                fill(source.uri, files[name], name, work)
            read = sum(read_ceiling(source.uri, name) for name in files)
            dump, dump_rss, dumped = cli(
                "dump", "--uri", source.uri, "--out", str(work / "dump"), "--state", str(work / "state")
            )
            insert = sum(ceiling(target.uri, path, f"ceiling_{name}") for name, path in files.items())
            restore, restore_rss, restored = cli(
                "restore", "--from", str(work / "dump"), "--uri", target.uri, "--state", str(work / "state")
            )
            client = MilvusClient(target.uri)
            counted = sum(client.query(n, filter="", output_fields=["count(*)"])[0]["count(*)"] for n in files)
            client.close()
            rows = each * args.collections
            assert dumped["rows"] == restored["rows"] == counted == rows, (dumped["rows"], restored["rows"], counted)
            for path, seconds, limit, rss, summary, kind in (
                ("dump", dump, read, dump_rss, dumped, "read"),
                ("restore", restore, insert, restore_rss, restored, "insert"),
            ):
                results.add(
                    {
                        "rows": rows,
                        "collections": args.collections,
                        "path": path,
                        f"{kind}_ceiling_rows_per_s": round(rows / limit),
                        "milvusdm_rows_per_s": round(rows / seconds),
                        "ratio": round(limit / seconds, 3),
                        "peak_rss_mb": round(rss),
                        "own_vmhwm_mb": summary["peakRssMb"],
                        "milvusdm_seconds": round(seconds, 1),
                        "ceiling_seconds": round(limit, 1),
                    }
                )
    results.save("dump_restore")


if __name__ == "__main__":
    main()
