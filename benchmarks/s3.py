"""HDF5 from S3 against the same file from local disk, into one embedded Milvus, in one run.

    .venv/bin/python benchmarks/s3.py [--rows 1000000] [--dim 128] [--block-mb 16]

A moto S3 server on loopback holds the file; `milvusdm run` streams it with ranged GETs
(``spec.s3.blockSizeMb``), then runs again from the local copy. Ratio = local seconds / S3
seconds (target >= 0.7); peak RSS is the runner's own. Moto answers in ~1 ms where real object
stores take ~100 ms a GET, so also try larger blocks against a real store.
Writes benchmarks/results/s3.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from throughput import Results, milvusdm, write_h5

from milvusdm.testing import EmbeddedMilvus, MotoS3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--block-mb", type=int, default=16)
    args = parser.parse_args()
    results = Results()
    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "milvus") as server, MotoS3() as s3:
        work = Path(scratch)
        os.environ.update(s3.environment)  # the runner's credentials, through the standard chain
        settings = {"endpoint": s3.endpoint, "region": "us-east-1", "pathStyle": True, "blockSizeMb": args.block_mb}
        s3.client().create_bucket(Bucket="bench")
        for rows in args.rows:
            h5 = work / f"data-{rows}.h5"
            write_h5(h5, rows, args.dim, seed=rows)
            s3.client().upload_file(str(h5), "bench", h5.name)
            remote = {"hdf5": {"path": f"s3://bench/{h5.name}"}}
            from_s3, s3_rss, _ = milvusdm(server.uri, remote, f"s3_{rows}", work, s3=settings)
            local, local_rss, _ = milvusdm(server.uri, {"hdf5": {"path": str(h5)}}, f"local_{rows}", work)
            result = {
                "rows": rows,
                "block_mb": args.block_mb,
                "local_rows_per_s": round(rows / local),
                "s3_rows_per_s": round(rows / from_s3),
                "ratio": round(local / from_s3, 3),
                "s3_peak_rss_mb": round(s3_rss),
                "local_peak_rss_mb": round(local_rss),
            }
            results.add(result)
    results.save("s3")


if __name__ == "__main__":
    main()
