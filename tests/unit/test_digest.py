"""The verification digest: order independent, additive, and moved by any single change."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pymilvus import DataType

from milvusdm import digest
from milvusdm.batch import Batch, objects
from milvusdm.digest import Digest, Hasher, new_seed
from milvusdm.schema import Column, Schema

SCHEMA = Schema(
    dim=8,
    scalars=(
        Column("tag", DataType.INT32),
        Column("name", DataType.VARCHAR, 64),
        Column("meta", DataType.JSON),
        Column("score", DataType.FLOAT),
    ),
)


def rows(n: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(
        0,
        rng.choice(2**62, n, replace=False).astype(np.int64),
        rng.random((n, 8), dtype=np.float32),
        {
            "tag": rng.integers(0, 100, n).astype(np.int32),
            "name": objects([f"n{i}" for i in range(n)]),
            "meta": objects([f'{{"a": {i}, "b": [1, 2]}}' for i in range(n)]),
            "score": rng.random(n).astype(np.float32),
        },
    )


def part(batch: Batch, rows: np.ndarray | slice) -> Batch:
    return Batch(0, batch.ids[rows], batch.vectors[rows], {k: v[rows] for k, v in batch.scalars.items()})


@pytest.fixture(params=[False, True], ids=["keys", "rows"])
def hasher(request) -> Hasher:
    return Hasher(new_seed(), SCHEMA, whole=request.param)


def test_order_and_batching_do_not_matter(hasher):
    batch = rows(1000)
    whole = hasher.digest(batch)
    shuffled = part(batch, np.random.default_rng(1).permutation(1000))
    assert hasher.digest(shuffled) == whole
    assert hasher.digest(part(batch, slice(0, 300))) + hasher.digest(part(batch, slice(300, None))) == whole
    assert whole.rows == 1000 and Digest.parse(whole.text()) == whole


def test_rows_hash_the_same_whatever_the_chunk(hasher, monkeypatch):
    """Rows are hashed a cache-sized chunk at a time; chunk edges change no row's hash."""
    batch = rows(1000)
    whole = hasher.rows(batch)
    for words in (1, 7, 64, 10_000):
        monkeypatch.setattr(digest, "CHUNK_WORDS", words)
        for mine, expected in zip(hasher.rows(batch), whole, strict=True):
            np.testing.assert_array_equal(mine, expected)


def test_a_missing_extra_or_duplicated_row_changes_both_lanes(hasher):
    batch = rows(500)
    whole = hasher.digest(batch)
    changed = [
        part(batch, slice(1, None)),  # one missing
        part(batch, np.r_[np.arange(500), 7]),  # one twice
        Batch(0, np.r_[batch.ids[:499], 12345], batch.vectors, batch.scalars),
    ]  # one key replaced
    for other in changed:
        digest = hasher.digest(other)
        assert digest.a != whole.a and digest.b != whole.b


def test_every_single_bit_of_a_key_matters(hasher):
    batch = rows(64)
    whole = hasher.digest(batch)
    for bit in range(64):
        ids = batch.ids.copy()
        ids[5] ^= np.int64(1) << np.int64(bit) if bit < 63 else np.int64(-(2**63))
        digest = hasher.digest(Batch(0, ids, batch.vectors, batch.scalars))
        assert digest.a != whole.a and digest.b != whole.b, bit


def test_whole_rows_see_every_bit_of_every_field():
    hasher = Hasher(new_seed(), SCHEMA, whole=True)
    batch = rows(50)
    whole = hasher.digest(batch)
    for bit in range(32):
        vectors = batch.vectors.copy()
        vectors.view(np.uint32)[3, bit % 8] ^= np.uint32(1 << bit)
        assert hasher.digest(Batch(0, batch.ids, vectors, batch.scalars)).a != whole.a, bit
    for name, value in (("tag", 101), ("name", "m3"), ("meta", '{"a": 3, "b": [1, 3]}'), ("score", 0.5)):
        scalars = {k: v.copy() for k, v in batch.scalars.items()}
        scalars[name][3] = value
        assert hasher.digest(Batch(0, batch.ids, batch.vectors, scalars)).a != whole.a, name


def test_swapped_vectors_between_rows_are_seen():
    hasher = Hasher(new_seed(), SCHEMA, whole=True)
    batch = rows(10)
    vectors = batch.vectors[[1, 0, *range(2, 10)]]
    assert hasher.digest(Batch(0, batch.ids, vectors, batch.scalars)) != hasher.digest(batch)


def test_values_compare_as_milvus_stores_them():
    """JSON by value, integers whatever width they came in, FLOAT as float32."""
    hasher = Hasher(new_seed(), SCHEMA, whole=True)
    batch = rows(20)
    stored = dict(
        batch.scalars,
        tag=batch.scalars["tag"].astype(np.int64),
        meta=objects([f'{{"b":[1,2],"a":{i}}}'.encode() for i in range(20)]),
        score=batch.scalars["score"].astype(np.float64),
    )
    assert hasher.digest(Batch(0, batch.ids, batch.vectors, stored)) == hasher.digest(batch)


def test_seeds_differ():
    batch = rows(10)
    assert Hasher(new_seed(), SCHEMA, False).digest(batch) != Hasher(new_seed(), SCHEMA, False).digest(batch)


def test_varchar_keys():
    schema = Schema(dim=8, key=Column("pk", DataType.VARCHAR, 32))
    hasher = Hasher(new_seed(), schema, whole=False)
    keys = objects([f"key-{i}" for i in range(100)])
    batch = Batch(0, keys, np.zeros((100, 0), np.float32))
    assert hasher.digest(batch) == hasher.digest(Batch(0, keys[::-1].copy(), batch.vectors))
    assert hasher.digest(Batch(0, keys[1:], batch.vectors[1:])) != hasher.digest(batch)


def test_the_sample_is_kept_as_the_copy_passes_it():
    """A ``sample`` proof keeps the key and whole-row hash of exactly the sampled positions, whatever
    the batching, so the sample needs no second read of the source; a resumed run's proof only
    holds the rows it copied itself (the rest are read again)."""
    from milvusdm.verification import Proof, _sample_positions

    seed, everything = new_seed(), rows(5000, seed=3)
    bounds, positions = (1000, 5000), _sample_positions((1000, 5000), 300)
    proof = Proof("sample", SCHEMA, seed, bounds=bounds, sample_size=300)
    cuts = [1000, 1001, 1777, 2500, 4999, 5000]
    for lo, hi in itertools.pairwise(cuts):
        proof.fold(everything.part(lo, hi))
    seen, keys, a, b = proof.sampled.at(positions)
    assert np.array_equal(seen, positions) and np.array_equal(keys, everything.ids[positions])
    expected = Hasher(seed, SCHEMA, whole=True).rows(part(everything, positions).normalized())
    assert np.array_equal(a, expected[0]) and np.array_equal(b, expected[1])

    resumed = Proof("sample", SCHEMA, seed, bounds=bounds, sample_size=300)
    resumed.fold(everything.part(2500, 5000))
    assert np.array_equal(resumed.sampled.at(positions)[0], positions[positions >= 2500])
