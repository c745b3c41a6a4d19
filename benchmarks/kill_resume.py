"""Kill `milvusdm run` with SIGKILL at many random points, resume, and prove the result exact.

    .venv/bin/python benchmarks/kill_resume.py [--trials 20] [--rows 100000] [--seed 1]

Each trial: a fresh collection on one embedded Milvus server, a kill once the checkpoint
passes a random row (anywhere from before the first batch to after the last), `--resume`,
then count(*) (which counts duplicates), the exact id set and every vector (verify: full).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np
import yaml
from pymilvus import MilvusClient

from milvusdm.testing import EmbeddedMilvus
from milvusdm.testing.interrupt import resume, run_until_killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "milvus") as server:
        work = Path(scratch)
        with h5py.File(work / "data.h5", "w") as f:
            f["embeddings"] = rng.random((args.rows, 32), dtype=np.float32)
            f["ids"] = rng.choice(2**62, size=args.rows, replace=False)
        client = MilvusClient(server.uri)
        failures = 0
        for trial in range(args.trials):
            kill_at = int(rng.integers(0, args.rows + 1))
            name = f"trial-{trial}"
            manifest = work / f"{name}.yaml"
            manifest.write_text(yaml.safe_dump({
                "apiVersion": "milvusdm.io/v1alpha1", "kind": "MilvusMigration", "metadata": {"name": name},
                "spec": {"source": {"hdf5": {"path": str(work / "data.h5")}},
                         "target": {"milvus": {"uri": server.uri, "collection": f"trial_{trial}", "index": {"type": "FLAT"}}},
                         "batchSize": 2000, "verify": "full"},
            }))
            killed = run_until_killed(manifest, work / "state", name, kill_at)
            summary = resume(manifest, work / "state")
            count = client.query(f"trial_{trial}", filter="", output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"]
            exact = count == args.rows and summary["verified"].startswith(f"full ({args.rows} ids present, {args.rows} rows equal")
            failures += not exact
            print(f"trial {trial}: killed after row {killed}, resumed {summary['rows']} rows, count {count}: "
                  f"{'exact' if exact else 'MISMATCH ' + summary['verified']}", flush=True)
            client.drop_collection(f"trial_{trial}")
        print(f"{args.trials - failures}/{args.trials} trials exact")
        raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
