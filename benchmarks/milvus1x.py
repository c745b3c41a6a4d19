"""A Milvus 1.x data directory -> Milvus 2.x with `milvusdm run`, against the raw pymilvus ceiling, in one run.

    PYTHONPATH=runner .venv/bin/python benchmarks/milvus1x.py [--rows 1000000] [--dim 128] [--segments 4]

Writes a 1.x directory (SQLite meta; ``--segments`` segments, 1% of the first one's rows deleted
so the live total is ``--rows``), then on one embedded server: (1) the ceiling — pymilvus
column-wise batched insert of the same number of rows from memory, flush, the manifest's default
index (AUTOINDEX) and load; (2) `milvusdm run` of a manifest with every default (batchSize 10000,
verify sample, AUTOINDEX), as a child process so its peak RSS (VmHWM) is its own. Both clocks are
wall clock around the whole thing. Prints one JSON line per result and writes
benchmarks/results/milvus1x.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from pymilvus import DataType, MilvusClient

from milvusdm.testing import EmbeddedMilvus
from milvusdm.testing.milvus1x_writer import Milvus1xWriter

BATCH = 10_000  # the manifest's default batchSize
RESULTS = Path(__file__).with_name("results")


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


def ceiling(uri: str, rows: int, dim: int) -> float:
    """Seconds for pymilvus to insert the rows (columns, from memory), flush, index (AUTOINDEX) and load."""
    rng = np.random.default_rng(0)
    client = MilvusClient(uri)
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    client.create_collection("ceiling", schema=schema)
    described = client.describe_collection("ceiling")
    connection = client._get_connection()  # the column-wise path Collection.insert uses
    vectors = rng.random((BATCH, dim), dtype=np.float32).tolist()
    began = time.perf_counter()
    for lo in range(0, rows, BATCH):
        n = min(BATCH, rows - lo)
        columns = [
            {"name": "id", "type": DataType.INT64, "values": list(range(lo, lo + n))},
            {"name": "vector", "type": DataType.FLOAT_VECTOR, "values": vectors[:n]},
        ]
        connection.batch_insert("ceiling", columns, schema=described)
    client.flush("ceiling")
    index = client.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="L2")
    client.create_index("ceiling", index)
    client.load_collection("ceiling")
    seconds = time.perf_counter() - began
    client.drop_collection("ceiling")
    client.close()
    return seconds


def milvusdm(uri: str, root: Path, workdir: Path) -> tuple[float, dict]:
    manifest = workdir / "milvus1x.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "milvusdm.io/v1alpha1",
                "kind": "MilvusMigration",
                "metadata": {"name": "bench-milvus1x"},
                "spec": {
                    "source": {"milvus1x": {"path": str(root), "collection": "items"}},
                    "target": {"milvus": {"uri": uri, "collection": "items"}},
                },  # every other setting: the default
            }
        )
    )
    cli = Path(sys.executable).with_name("milvusdm")
    began = time.perf_counter()
    child = subprocess.run(
        [str(cli), "run", "-f", str(manifest), "--json", "-q", "--state", str(workdir / "state")],
        stdout=subprocess.PIPE,
        check=True,
    )
    return time.perf_counter() - began, json.loads(child.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--segments", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "milvus") as server:
        work = Path(scratch)
        written = write_directory(work / "legacy", args.rows, args.dim, args.segments)
        raw = ceiling(server.uri, args.rows, args.dim)
        ours, summary = milvusdm(server.uri, work / "legacy", work)
        assert summary["rows"] == args.rows and summary["verified"].startswith("sample"), summary
        result = {
            "rows": args.rows,
            "dim": args.dim,
            "segments": args.segments,
            "write_directory_s": round(written, 1),
            "ceiling_s": round(raw, 1),
            "milvusdm_s": round(ours, 1),
            "ratio": round(raw / ours, 3),
            "ceiling_rows_per_s": round(args.rows / raw),
            "milvusdm_rows_per_s": round(args.rows / ours),
            "milvusdm_peak_rss_mb": round(summary["peakRssMb"]),
            "milvusdm_phases_s": summary["phases"],
            "verified": summary["verified"],
        }
    print(json.dumps(result), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "milvus1x.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
