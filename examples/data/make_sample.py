"""Writes sample.h5: 2,000 x 64 float32 vectors in MilvusDM's layout, with ids and two fields.

Deterministic (fixed seed), so the shipped file can be regenerated and compared.
"""

from pathlib import Path

import h5py
import numpy as np

ROWS, DIM = 2_000, 64


def write(path: Path) -> None:
    rng = np.random.default_rng(20261128)
    with h5py.File(path, "w", track_times=False) as f:
        f.create_dataset("embeddings", data=rng.standard_normal((ROWS, DIM), dtype=np.float32), chunks=(500, DIM))
        f.create_dataset("ids", data=np.arange(ROWS, dtype=np.int64) * 10 + 7)
        f.create_dataset("category", data=rng.integers(0, 10, ROWS, dtype=np.int32))
        f.create_dataset("title", data=[f"item {i}" for i in range(ROWS)], dtype=h5py.string_dtype())
        f.attrs["distance"] = "euclidean"


if __name__ == "__main__":
    write(Path(__file__).with_name("sample.h5"))
