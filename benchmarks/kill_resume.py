"""Kill `milvusdm run` with SIGKILL at many random points, resume, and prove the result exact.

    .venv/bin/python benchmarks/kill_resume.py [--path hdf5-to-milvus|faiss-to-milvus|milvus-to-hdf5]
                                               [--trials 20] [--rows 100000] [--seed 1]

Each trial: a fresh target (a collection on one embedded Milvus server, or an HDF5 export of a
collection on it), a kill once the checkpoint passes a random row (anywhere from before the
first batch to after the last), `--resume`, then verify: full (every id and vector), plus
count(*) for collections (it counts duplicates) and the export's ids and vectors against the
source's for files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import faiss
import h5py
import numpy as np
import yaml
from pymilvus import MilvusClient

from milvusdm.testing import EmbeddedMilvus
from milvusdm.testing.interrupt import resume, run_until_killed


def write_manifest(path: Path, name: str, source: dict, target: dict) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "milvusdm.io/v1alpha1",
                "kind": "MilvusMigration",
                "metadata": {"name": name},
                "spec": {"source": source, "target": target, "batchSize": 2000, "verify": "full"},
            }
        )
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--path", choices=["hdf5-to-milvus", "faiss-to-milvus", "milvus-to-hdf5"], default="hdf5-to-milvus"
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory() as scratch, EmbeddedMilvus(Path(scratch) / "milvus") as server:
        work = Path(scratch)
        vectors = rng.random((args.rows, 32), dtype=np.float32)
        ids = rng.choice(2**62, size=args.rows, replace=False).astype(np.int64)
        with h5py.File(work / "data.h5", "w") as f:
            f["embeddings"], f["ids"] = vectors, ids
        source = {"hdf5": {"path": str(work / "data.h5")}}
        if args.path == "faiss-to-milvus":
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(32), 32, 64)
            index.train(vectors[:20_000])
            index.add_with_ids(vectors, ids)
            faiss.write_index(index, str(work / "data.faiss"))
            source = {"faiss": {"path": str(work / "data.faiss")}}
        if args.path == "milvus-to-hdf5":
            load = write_manifest(
                work / "load.yaml", "load", source, {"milvus": {"uri": server.uri, "collection": "source"}}
            )
            subprocess.run(
                [sys.executable, "-m", "milvusdm", "run", "-f", str(load), "-q", "--state", str(work / "load")],
                check=True,
            )
            source = {"milvus": {"uri": server.uri, "collection": "source"}}
        order = np.argsort(ids)
        client = MilvusClient(server.uri)
        failures = 0
        for trial in range(args.trials):
            kill_at = int(rng.integers(0, args.rows + 1))
            name = f"trial-{trial}"
            export = work / f"{name}.h5"
            target = (
                {"hdf5": {"path": str(export)}}
                if args.path == "milvus-to-hdf5"
                else {"milvus": {"uri": server.uri, "collection": f"trial_{trial}", "index": {"type": "FLAT"}}}
            )
            manifest = write_manifest(work / f"{name}.yaml", name, source, target)
            killed = run_until_killed(manifest, work / "state", name, kill_at)
            summary = resume(manifest, work / "state")
            exact = summary["verified"].startswith(f"full ({args.rows} ids present, {args.rows} rows equal")
            if args.path == "milvus-to-hdf5":
                with h5py.File(export) as f:
                    exact &= np.array_equal(f["ids"][:], ids[order]) and np.array_equal(
                        f["embeddings"][:], vectors[order]
                    )
                export.unlink()
                detail = "export identical" if exact else "export differs"
            else:
                count = client.query(
                    f"trial_{trial}", filter="", output_fields=["count(*)"], consistency_level="Strong"
                )[0]["count(*)"]
                exact &= count == args.rows
                detail = f"count {count}"
                client.drop_collection(f"trial_{trial}")
            failures += not exact
            print(
                f"trial {trial}: killed after row {killed}, resumed {summary['rows']} rows, {detail}: "
                f"{'exact' if exact else 'MISMATCH ' + summary['verified']}",
                flush=True,
            )
        print(f"{args.path}: {args.trials - failures}/{args.trials} trials exact")
        raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
