"""Parquet -> Milvus against the insert ceiling, Milvus -> Parquet against the read ceiling, in one run.

    .venv/bin/python benchmarks/parquet.py [--rows 1000000] [--dim 128] [--row-group 0]

One embedded server. For each N: random rows (``throughput.write_h5``) are written as a
Parquet file in VectorDBBench's layout (``id``, ``emb`` as a list of float32), by default as
pyarrow writes it: one row group of up to 1M rows (512 MB at 128-d), which milvusdm must read
in slices; ``--row-group R`` writes row groups of R rows instead. Then (1) the insert ceiling
(``throughput.ceiling``: column-wise insert, flush, FLAT index, load) against `milvusdm run`
Parquet -> Milvus ending in the same state; (2) the read ceiling (pymilvus ``query_iterator``,
``milvus_source.read_ceiling``) against `milvusdm run` Milvus -> Parquet. milvusdm runs as a
child process (its own VmHWM). Writes benchmarks/results/parquet.json.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from milvus_source import read_ceiling
from throughput import Results, ceiling, fill, milvusdm, write_h5

from milvusdm.testing import EmbeddedMilvus


def write_parquet(h5: Path, path: Path, row_group: int) -> None:
    """The HDF5 file's rows as VectorDBBench's train.parquet, written in one call as pyarrow does."""
    with h5py.File(h5) as f:
        vectors, ids = f["embeddings"][:], f["ids"][:]
    rows, dim = vectors.shape
    emb = pa.ListArray.from_arrays(
        pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32)), pa.array(vectors.reshape(-1))
    )
    pq.write_table(pa.table({"id": ids, "emb": emb}), path, row_group_size=row_group or None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--row-group", type=int, default=0, help="rows per row group; 0: pyarrow's default (1M)")
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "milvus") as server:
        work = Path(scratch)
        for rows in args.rows:
            h5, source = work / f"data-{rows}.h5", work / f"train-{rows}.parquet"
            write_h5(h5, rows, args.dim, seed=rows)
            write_parquet(h5, source, args.row_group)
            groups = pq.ParquetFile(source).metadata.num_row_groups
            insert = ceiling(server.uri, h5, f"ceiling_{rows}")
            load, load_rss, load_summary = milvusdm(
                server.uri, {"parquet": {"path": str(source)}}, f"load_{rows}", work
            )
            name = f"source_{rows}"
            fill(server.uri, h5, name, work)
            read = read_ceiling(server.uri, name)
            export = work / f"export-{rows}.parquet"
            dump, dump_rss, dump_summary = milvusdm(
                server.uri,
                {"milvus": {"uri": server.uri, "collection": name}},
                f"export_{rows}",
                work,
                target={"parquet": {"path": str(export)}},
            )
            assert pq.ParquetFile(export).metadata.num_rows == rows
            for path, seconds, limit, rss, summary in (
                ("parquet-to-milvus", load, insert, load_rss, load_summary),
                ("milvus-to-parquet", dump, read, dump_rss, dump_summary),
            ):
                results.add(
                    {
                        "rows": rows,
                        "path": path,
                        "source_row_groups": groups,
                        "ceiling": "insert" if limit is insert else "read",
                        "ceiling_rows_per_s": round(rows / limit),
                        "milvusdm_rows_per_s": round(rows / seconds),
                        "ratio": round(limit / seconds, 3),
                        "milvusdm_peak_rss_mb": round(rss),
                        "milvusdm_phases_s": summary["phases"],
                    }
                )
            export.unlink()
    results.save("parquet")


if __name__ == "__main__":
    main()
