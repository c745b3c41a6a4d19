"""Order-independent digests of rows: how verification proves a copy without reading both sides row by row,
and how a dump records its files (``dump.json``, with the fixed ``DUMP_SEED``).

A digest is ``(rows, a, b)``: the row count and two sums, modulo 2**64, of two 64-bit hashes of
every row. Sums do not care about order, so batches fold in as they commit, shards add up, and a
scan of the target in its own order gives the same digest exactly when it holds the same
multiset of rows. A row missing, extra or twice changes the count and both sums; an altered row
changes both sums by the difference of two hashes.

Each row is a vector of 64-bit words (its key; for whole rows also every field, canonically: ints
as int64, FLOAT as float32 bits, vectors as their bytes, strings, JSON and arrays as a 128-bit
keyed BLAKE2b of their canonical UTF-8). Lane ``a`` hashes word ``j`` as ``fmix64(word + Ka[j])``
(MurmurHash3's finaliser), sums the words of the row and mixes the sum again; lane ``b`` does the
same with its own keys and SplitMix64's finaliser. Both finalisers are bijections, so one key
replaced by another always changes the key digest; beyond that, a difference escapes one lane
with probability about 2**-64 and both about 2**-128. The keys come from a random 128-bit seed
per migration, kept in the checkpoint, so no fixed data set can be built to collide.
It guards against loss and corruption, not against someone who knows the seed.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymilvus import DataType

from milvusdm.batch import Batch
from milvusdm.schema import Column, Schema

MASK = (1 << 64) - 1
LANES = (  # (shift, multiplier, multiplier): MurmurHash3 fmix64 and SplitMix64's finaliser
    (33, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53, 33),
    (30, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 31),
)
_U64 = np.uint64


DUMP_SEED = "6d696c767573646d2d64756d702d7631"  # fixed, so dump.json's digests can be recomputed by anyone


def new_seed() -> str:
    return secrets.token_hex(16)


def of_rows(schema: Schema, batches: Iterable[Batch], seed: str = DUMP_SEED) -> tuple[Digest, Digest]:
    """The key digest and the whole-row digest of every row in ``batches`` (normalised as
    sources yield them): what a copy with ``verify: sample`` or ``full`` keeps of the same rows."""
    keys, rows = Hasher(seed, schema, whole=False), Hasher(seed, schema, whole=True)
    by_key = by_row = Digest()
    for batch in batches:
        normalized = batch.normalized()
        by_key, by_row = by_key + keys.digest(normalized), by_row + rows.digest(normalized)
    return by_key, by_row


@dataclass(frozen=True)
class Digest:
    rows: int = 0
    a: int = 0
    b: int = 0

    def __add__(self, other: Digest) -> Digest:
        return Digest(self.rows + other.rows, (self.a + other.a) & MASK, (self.b + other.b) & MASK)

    def __sub__(self, other: Digest) -> Digest:
        return Digest(self.rows - other.rows, (self.a - other.a) & MASK, (self.b - other.b) & MASK)

    def text(self) -> str:
        """For checkpoints and JSON status (numbers above 2**53 do not survive JSON everywhere)."""
        return f"{self.rows}:{self.a:016x}:{self.b:016x}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        rows, a, b = text.split(":")
        return cls(int(rows), int(a, 16), int(b, 16))


CHUNK_WORDS = 1 << 17  # words hashed at a time (1 MB): they and their scratch copy stay in the CPU's cache


def _mix(words: np.ndarray, lane: int, scratch: np.ndarray | None = None) -> np.ndarray:
    """A 64-bit finaliser, in place on a uint64 array (numpy wraps multiplication modulo 2**64);
    ``scratch``, of the same shape, holds the shifted words instead of a new array per step."""
    s1, m1, m2, s2 = LANES[lane]
    shifted = np.empty_like(words) if scratch is None else scratch
    for shift, multiplier in ((s1, m1), (s2, m2)):
        words ^= np.right_shift(words, _U64(shift), out=shifted)
        words *= _U64(multiplier)
    words ^= np.right_shift(words, _U64(s1), out=shifted)
    return words


def _blake(values: list[bytes], key: bytes) -> np.ndarray:
    """Two uint64 words per value: a keyed 128-bit BLAKE2b of its canonical bytes."""
    out = np.empty((len(values), 2), dtype=np.uint64)
    raw = out.view(np.uint8).reshape(len(values), 16)
    for i, value in enumerate(values):
        raw[i] = np.frombuffer(hashlib.blake2b(value, key=key, digest_size=16).digest(), dtype=np.uint8)
    return out


def _text(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _json(value: Any) -> bytes:
    """JSON by value: key order and spacing as Milvus re-serialises them do not matter."""
    return json.dumps(json.loads(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _array(element: DataType | None) -> Callable[[Any], bytes]:
    """Arrays as JSON lists of their elements, each as Milvus stores the element type."""
    casts: dict[DataType | None, Callable[[Any], Any]] = {
        DataType.FLOAT: lambda v: float(np.float32(v)),
        DataType.DOUBLE: float,
        DataType.BOOL: bool,
        DataType.VARCHAR: str,
    }
    cast = casts.get(element, int)
    return lambda values: json.dumps([cast(v) for v in values], ensure_ascii=False).encode()


def _fixed(values: np.ndarray, dtype: str) -> np.ndarray:
    """One word per value: the value in ``dtype``, its bits zero-extended to 64."""
    bits = np.ascontiguousarray(values, dtype=dtype)
    unsigned = bits.view(f"u{bits.dtype.itemsize}")
    return unsigned.astype(np.uint64).reshape(-1, 1)


def _bytes(values: np.ndarray) -> np.ndarray:
    """A vector's bytes, zero-padded to whole words."""
    raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(values), -1)
    pad = -raw.shape[1] % 8
    if pad:
        raw = np.concatenate([raw, np.zeros((len(raw), pad), np.uint8)], axis=1)
    return raw.view(np.uint64)


def words(column: Column, values: np.ndarray, key: bytes) -> np.ndarray:
    """A column as a (rows, k) uint64 matrix, equal exactly when Milvus would store equal values
    (how: the type's ``digest`` in the datatypes table)."""
    how = column.type.digest
    if how == "bytes":
        return _bytes(values.astype(np.float32, copy=False) if column.dtype == DataType.FLOAT_VECTOR else values)
    if how == "text":
        return _blake([_text(v) for v in values], key)
    if how == "json":
        return _blake([_json(v) for v in values], key)
    if how == "array":
        canonical = _array(column.element_type)
        return _blake([canonical(v) for v in values], key)
    return _fixed(values, how)  # int64 (BOOL and integers, whatever width they came in), float32, float64


class Hasher:
    """Row hashes of batches: of the key alone, or of whole rows (``whole``)."""

    def __init__(self, seed: str, schema: Schema, whole: bool) -> None:
        self.seed, self.schema = bytes.fromhex(seed), schema
        self.key = schema.key or Column("id", DataType.INT64)
        self.whole, self.vector = whole, schema.vector
        # by name: a collection read back from a server may list its fields in another order than a file
        self.scalars = tuple(sorted(schema.scalars, key=lambda c: c.name)) if whole else ()
        self._offsets: dict[int, np.ndarray] = {}

    def offsets(self, width: int) -> np.ndarray:
        """Both lanes' per-word keys, (2, width), drawn from the seed: the same for every batch."""
        if width not in self._offsets:
            rng = np.random.default_rng(np.frombuffer(self.seed, dtype=np.uint64))
            self._offsets[width] = rng.integers(0, 2**64, size=(2, width), dtype=np.uint64, endpoint=False)
        return self._offsets[width]

    def matrix(self, batch: Batch) -> np.ndarray:
        """The words of every row, (rows, width)."""
        parts = [words(self.key, batch.ids, self.seed)]
        if self.whole:
            parts.append(words(self.vector, batch.vectors, self.seed))
        parts += [words(column, batch.scalars[column.name], self.seed) for column in self.scalars]
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def rows(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Both lanes' hash of every row of ``batch``, a cache-sized chunk of rows at a time (whole
        rows of 128 floats hash 2-3x faster so than in one pass over the batch)."""
        matrix = self.matrix(batch)
        rows, width = matrix.shape
        offsets, step = self.offsets(width), max(1, CHUNK_WORDS // width)
        hashes = np.empty((2, rows), dtype=np.uint64)
        words = np.empty((min(step, rows), width), dtype=np.uint64)
        scratch = np.empty_like(words)
        for start in range(0, rows, step):
            part = matrix[start : start + step]
            chunk, spare = words[: len(part)], scratch[: len(part)]
            for lane in (0, 1):
                np.add(part, offsets[lane], out=chunk)
                _mix(chunk, lane, spare).sum(axis=1, dtype=np.uint64, out=hashes[lane, start : start + len(part)])
        return _mix(hashes[0], 0), _mix(hashes[1], 1)

    def digest(self, batch: Batch) -> Digest:
        if not len(batch):
            return Digest()
        a, b = self.rows(batch)
        return Digest(len(batch), int(a.sum(dtype=np.uint64)), int(b.sum(dtype=np.uint64)))
