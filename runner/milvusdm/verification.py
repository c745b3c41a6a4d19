"""Proving the target holds what the source has, at little more than the cost of a key scan.

Modes, each including the ones before: ``count`` (row count), ``ids`` (the target holds exactly
the source's keys: none missing, none extra, none twice), ``sample`` (N random rows equal in every
field), ``full`` (every row equal). The copy folds every committed batch into a digest (see
``digest``: of keys, or of whole rows for ``full``); the target is scanned once, keys only (or
whole rows), into the same digest; with the row count this proves the multiset. Only when they
disagree is anything read again: a second pass per hash bucket names the first differing ids.
Where the target may hold rows of others (one shard of a sharded run, ``milvusdm verify`` of an
append), the source's ids are looked up in the target instead. Memory stays O(batch).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from milvusdm.batch import Batch
from milvusdm.digest import Digest, Hasher, words
from milvusdm.errors import VerificationError
from milvusdm.schema import Schema
from milvusdm.sinks import KeySpan, Sink
from milvusdm.sources import Source

LOOKUP_BATCH = 5_000  # ids per target query (Milvus caps a query's result window at 16384)
SCAN_BATCH = 20_000  # whole rows per read of a target scan (10 MB at 128 dimensions)
SAMPLE_SEED = 20_261_128
BUCKETS = 4096  # hash buckets of the second pass
EXAMINED_BUCKETS = 8  # differing buckets whose rows are listed
EXAMPLES = 5


def digests(mode: str) -> bool:
    """Whether ``mode`` folds the copy into a digest."""
    return mode in ("ids", "sample", "full")


class Proof:
    """The digest a run keeps of what it copied: of keys, or of whole rows for ``full``. For
    ``sample``, given the copy's ``bounds``, it also keeps the key and whole-row hash of each
    sampled row as the copy passes it, so the sample needs no second read of the source (a
    Milvus source would scan its keys up to each sampled position again)."""

    def __init__(
        self,
        mode: str,
        schema: Schema,
        seed: str,
        copied: Digest | None = None,
        bounds: tuple[int, int] | None = None,
        sample_size: int = 0,
    ) -> None:
        self.mode, self.whole, self.seed = mode, mode == "full", seed
        self.hasher = Hasher(seed, schema, self.whole) if digests(mode) else None
        self.copied = copied or Digest()
        self.lowest: int | None = None  # of the int keys this process folded: how a target scan is cut
        self.highest: int | None = None
        self.spanned = 0  # how many keys lie from lowest to highest
        self.positions, self.sampled = np.empty(0, np.int64), None
        if mode == "sample" and bounds is not None:
            self.positions = _sample_positions(bounds, sample_size)
            self.sampled = Sampled(Hasher(seed, schema, whole=True))

    @property
    def rows_hasher(self) -> Hasher:
        """The hasher (modes ids, sample and full have one)."""
        assert self.hasher is not None, f"verify mode {self.mode} keeps no digest"
        return self.hasher

    @property
    def kind(self) -> str:
        return "" if self.hasher is None else "rows" if self.whole else "keys"

    def fold(self, batch: Batch) -> None:
        if self.hasher is not None:
            self.copied += self.rows_hasher.digest(batch)
            self._span(batch.ids)
        if self.sampled is not None:
            lo, hi = np.searchsorted(self.positions, [batch.start, batch.stop])
            if hi > lo:
                self.sampled.add(self.positions[lo:hi], _take(batch, self.positions[lo:hi] - batch.start).normalized())

    def of_source(self, source: Source, start: int, stop: int, size: int) -> Digest:
        """The digest of source rows ``start..stop``, read again (keys alone unless ``full``)."""
        total = Digest()
        if self.whole:
            for batch in source.batches(start, stop, size):
                total += self.rows_hasher.digest(batch.normalized())
                self._span(batch.ids)
        else:
            for keys in source.keys(start, stop, size):
                total += self.rows_hasher.digest(_keys(keys))
                self._span(keys)
        return total

    def _span(self, ids: np.ndarray) -> None:
        if len(ids) and ids.dtype.kind in "iu":
            low, high = int(ids.min()), int(ids.max())
            self.lowest = low if self.lowest is None else min(self.lowest, low)
            self.highest = high if self.highest is None else max(self.highest, high)
            self.spanned += len(ids)

    @property
    def span(self) -> KeySpan | None:
        """Where the keys seen lie: the target scan is cut into ranges by it (any cut is correct,
        as the ranges cover every key; this one balances them for evenly spread keys)."""
        if self.lowest is None or self.highest is None:
            return None
        return KeySpan(self.lowest, self.highest, self.spanned)

    def of_target(self, sink: Sink) -> Digest:
        """The digest of what the target holds, its scan's lanes read at once."""
        lanes = sink.lanes(self.whole, SCAN_BATCH, self.span)
        if len(lanes) == 1:
            return self._of(lanes[0])
        stop = threading.Event()  # an interrupt ends the other lanes at their next page
        with ThreadPoolExecutor(len(lanes), thread_name_prefix="milvusdm-scan") as pool:
            lanes_read = [pool.submit(self._of, lane, stop) for lane in lanes]
            try:
                return sum((lane.result() for lane in lanes_read), Digest())
            finally:
                stop.set()

    def _of(self, batches: Iterator[Batch], stop: threading.Event | None = None) -> Digest:
        total = Digest()
        for batch in batches:
            if stop is not None and stop.is_set():
                break
            total += self.rows_hasher.digest(batch)
        return total


class Sampled:
    """Sampled rows as the copy saw them: position, key and both lanes of the whole-row hash."""

    def __init__(self, hasher: Hasher) -> None:
        self.hasher = hasher
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, positions: np.ndarray, rows: Batch) -> None:
        self.parts.append((positions, rows.ids, *self.hasher.rows(rows)))

    def at(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(positions, keys, hash a, hash b) of those of ``positions`` seen, in position order."""
        if not self.parts:
            return positions[:0], np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.uint64)
        seen, keys, a, b = (np.concatenate(column) for column in zip(*self.parts, strict=True))
        keep = np.isin(seen, positions)
        order = np.argsort(seen[keep], kind="stable")
        return seen[keep][order], keys[keep][order], a[keep][order], b[keep][order]


@dataclass
class Findings:
    checked: int = 0
    compared: int = 0
    missing: list[int | str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    missing_count: int = 0
    differing_count: int = 0

    def note_missing(self, ids: np.ndarray) -> None:
        self.missing_count += len(ids)
        self.missing.extend(ids[: max(0, EXAMPLES - len(self.missing))].tolist())

    def note_difference(self, text: str) -> None:
        self.differing_count += 1
        if len(self.differing) < EXAMPLES:
            self.differing.append(text)

    def absorb(self, other: Findings) -> None:
        """Add what a check run beside this one found."""
        self.compared += other.compared
        self.missing_count += other.missing_count
        self.missing.extend(other.missing[: max(0, EXAMPLES - len(self.missing))])
        self.differing_count += other.differing_count
        self.differing.extend(other.differing[: max(0, EXAMPLES - len(self.differing))])


def verify(
    proof: Proof,
    source: Source,
    sink: Sink,
    bounds: tuple[int, int],
    expected_count: int | None,
    sample_size: int = 1000,
    baseline: Digest | None = None,
) -> str:
    """Check the target; returns a short description of what was proven, or raises.

    ``proof.copied`` is the digest of the source's rows in ``bounds``; with an ``expected_count``
    and the ``baseline`` digest of what the target held before, the target must hold exactly
    those rows. Without them, the source's ids are looked up instead.
    """
    mode = proof.mode
    if mode == "none":
        return "none"
    problems: list[str] = []
    findings: Findings | None = None
    with ThreadPoolExecutor(2, thread_name_prefix="milvusdm-verify") as pool:
        counting = pool.submit(sink.count) if expected_count is not None else None  # beside the scan
        if mode != "count" and expected_count is not None and baseline is not None:
            findings, problem = _by_digest(proof, source, sink, bounds, sample_size, baseline, pool)
            problems += [problem] if problem else []
        found_count = counting.result() if counting is not None else None
    if expected_count is not None and found_count != expected_count:
        assert found_count is not None  # counted whenever a count is expected
        difference = found_count - expected_count
        what = "extra or duplicated" if difference > 0 else "missing"
        problems.insert(0, f"holds {found_count} rows, expected {expected_count} ({abs(difference)} {what})")
    if mode == "count":
        _raise_if(problems, sink)
        return f"count ({found_count} rows)" if found_count is not None else "none (count needs the whole target)"
    if findings is None:
        findings = _look_up(proof, source, sink, bounds, sample_size)
    if findings.missing_count:
        examples = ", ".join(map(str, findings.missing))
        problems.append(f"{findings.missing_count} source ids missing (e.g. {examples})")
    if findings.differing_count:
        problems.append(f"{findings.differing_count} rows differ ({'; '.join(findings.differing)})")
    _raise_if(problems, sink)
    counted = f", count {found_count}" if found_count is not None else ""
    compared = f", {findings.compared} rows equal" if mode != "ids" else ""
    return f"{mode} ({findings.checked} ids present{compared}{counted})"


def _by_digest(
    proof: Proof,
    source: Source,
    sink: Sink,
    bounds: tuple[int, int],
    sample_size: int,
    baseline: Digest,
    pool: ThreadPoolExecutor,
) -> tuple[Findings, str]:
    """The target's digest against the copy's (naming differing ids if they disagree), and for
    ``sample`` the sampled rows, looked up in ``pool`` beside the scan; also the problem the
    digests show if no differing row was found ("" if none)."""
    sampled, sampling = Findings(), None
    if proof.mode == "sample":
        positions = _sample_positions(bounds, sample_size)
        sampling = pool.submit(_compare_sample, proof, source, sink, positions, sampled)
    findings, problem = Findings(checked=proof.copied.rows), ""
    if proof.of_target(sink) - baseline != proof.copied:
        if sampling is not None:
            sampling.result()  # it may read the source too: one reader at a time
        findings = _locate(proof, source, sink, bounds)
        if not findings.missing_count and not findings.differing_count:
            problem = "its digest differs from the source's, but no differing row was found"
    if proof.mode == "full" and not findings.differing_count and not findings.missing_count:
        findings.compared = proof.copied.rows
    if sampling is not None:
        sampling.result()
        findings.absorb(sampled)
    return findings, problem


def _raise_if(problems: list[str], sink: Sink) -> None:
    if problems:
        raise VerificationError(
            f"{sink.describe()} does not match the source: {'; '.join(problems)}",
            "inspect the target; rerun with mode overwrite to copy again",
        )


def _keys(ids: np.ndarray) -> Batch:
    return Batch(0, ids, np.empty((len(ids), 0), dtype=np.float32))


def _sample_positions(bounds: tuple[int, int], sample_size: int) -> np.ndarray:
    """Sorted source positions of the sample. Drawn without an array of the whole range: numpy
    draws a small sample from a large range with Floyd's algorithm, O(sample)."""
    start, stop = bounds
    size = min(sample_size, stop - start)
    rng = np.random.default_rng(SAMPLE_SEED)
    return start + np.sort(rng.choice(stop - start, size=size, replace=False))


# -- naming what differs (only after the digests disagreed) ---------------------------------


def _bucket_sums(proof: Proof, batches: Iterator[Batch], keys: Hasher) -> np.ndarray:
    """Per hash bucket of the key: row count and both lanes' sums, (3, BUCKETS) uint64."""
    sums = np.zeros((3, BUCKETS), dtype=np.uint64)
    for batch in batches:
        bucket = (keys.rows(batch)[0] >> np.uint64(52)).astype(np.intp)
        a, b = proof.rows_hasher.rows(batch)
        for lane, values in enumerate((np.ones(len(batch), np.uint64), a, b)):
            np.add.at(sums[lane], bucket, values)
    return sums


def _rows_in(proof: Proof, batches: Iterator[Batch], keys: Hasher, chosen: np.ndarray) -> dict[Any, list[Any]]:
    """key -> list of (row hash, per-column hashes) of the rows in the ``chosen`` buckets."""
    found: dict[Any, list[Any]] = {}
    for batch in batches:
        bucket = (keys.rows(batch)[0] >> np.uint64(52)).astype(np.intp)
        rows = np.flatnonzero(np.isin(bucket, chosen))
        if not len(rows):
            continue
        part = _take(batch, rows)
        a, _ = proof.rows_hasher.rows(part)
        columns = _column_hashes(proof, part)
        for i, key in enumerate(part.ids.tolist()):
            found.setdefault(key, []).append((int(a[i]), [c[i] for c in columns]))
    return found


def _column_hashes(proof: Proof, batch: Batch) -> list[list[bytes]]:
    """Per column (vector, then fields) the canonical words of each row, to name what differs."""
    if not proof.whole:
        return []
    seed = proof.rows_hasher.seed
    columns = [words(proof.rows_hasher.vector, batch.vectors, seed)]
    columns += [words(c, batch.scalars[c.name], seed) for c in proof.rows_hasher.scalars]
    return [[row.tobytes() for row in column] for column in columns]


def _take(batch: Batch, rows: np.ndarray) -> Batch:
    vectors = batch.vectors[rows] if batch.vectors.shape[1] else np.empty((len(rows), 0), np.float32)
    return Batch(0, batch.ids[rows], vectors, {n: v[rows] for n, v in batch.scalars.items()})


def _source_batches(proof: Proof, source: Source, bounds: tuple[int, int]) -> Iterator[Batch]:
    if proof.whole:
        return (b.normalized() for b in source.batches(*bounds, SCAN_BATCH))
    return (_keys(k) for k in source.keys(*bounds, SCAN_BATCH))


def _locate(proof: Proof, source: Source, sink: Sink, bounds: tuple[int, int]) -> Findings:
    """The first differing ids: bucket the rows of both sides by their key's hash, then list the
    rows of the first differing buckets. Rows the target held before (mode append) show as extra."""
    keys = Hasher(proof.seed, proof.rows_hasher.schema, whole=False)
    ours = _bucket_sums(proof, _source_batches(proof, source, bounds), keys)
    theirs = _bucket_sums(proof, sink.scan(proof.whole, SCAN_BATCH), keys)
    differing = np.flatnonzero((ours != theirs).any(axis=0))
    chosen = differing[:EXAMINED_BUCKETS]
    expected = _rows_in(proof, _source_batches(proof, source, bounds), keys, chosen)
    held = _rows_in(proof, sink.scan(proof.whole, SCAN_BATCH), keys, chosen)
    findings = Findings(checked=proof.copied.rows)
    columns = ["vector", *(f"field {c.name}" for c in proof.rows_hasher.scalars)]
    missing = [key for key in expected if key not in held]
    findings.note_missing(np.array(missing, dtype=object))
    findings.checked -= len(missing)
    for key, copies in held.items():
        if key not in expected:
            findings.note_difference(f"id {key}: not in the source")
        elif len(copies) > 1:
            findings.note_difference(f"id {key}: stored {len(copies)} times")
        elif copies[0][0] != expected[key][0][0]:
            ours_columns, theirs_columns = expected[key][0][1], copies[0][1]
            what = next(
                (name for name, x, y in zip(columns, ours_columns, theirs_columns, strict=True) if x != y), "key"
            )
            findings.note_difference(f"id {key}: {what}")
    if len(differing) > len(chosen):
        findings.note_difference(f"and more in {len(differing) - len(chosen)} other hash buckets")
    return findings


# -- sampling and looking up ---------------------------------------------------------------


def _compare_sample(proof: Proof, source: Source, sink: Sink, positions: np.ndarray, findings: Findings) -> None:
    """The sampled source rows against the target's rows with the same keys, in lookups of up to
    LOOKUP_BATCH keys (a lookup per row would pay a consistent read each). Rows the copy hashed
    are compared by hash; the others (copied before a resume, or ``milvusdm verify``), and any
    row whose hash differs (to name the field), are read from the source again."""
    hasher = Hasher(proof.seed, proof.rows_hasher.schema, whole=True)
    if proof.sampled is not None:
        seen, keys, ours_a, ours_b = proof.sampled.at(positions)
        reread = [positions[~np.isin(positions, seen)]]
        for lo in range(0, len(keys), LOOKUP_BATCH):
            chunk = slice(lo, lo + LOOKUP_BATCH)
            found = sink.fetch(keys[chunk], with_data=True)
            where = {pk: i for i, pk in enumerate(found.ids.tolist())}
            present = np.array([pk in where for pk in keys[chunk].tolist()], dtype=bool)
            findings.note_missing(keys[chunk][~present])
            rows = np.array([where[pk] for pk in keys[chunk][present].tolist()], dtype=np.intp)
            theirs_a, theirs_b = hasher.rows(_take(found, rows))
            equal = (theirs_a == ours_a[chunk][present]) & (theirs_b == ours_b[chunk][present])
            findings.compared += int(equal.sum())
            reread.append(seen[chunk][present][~equal])
        positions = np.sort(np.concatenate(reread))
        if not len(positions):
            return
    pending: list[Batch] = []
    for batch in source.rows_at(positions):
        pending.append(batch.normalized())
        if sum(map(len, pending)) >= LOOKUP_BATCH:
            _compare_sampled(hasher, sink, _concat(pending), findings)
            pending = []
    if pending:
        _compare_sampled(hasher, sink, _concat(pending), findings)


def _concat(batches: list[Batch]) -> Batch:
    scalars = {name: np.concatenate([b.scalars[name] for b in batches]) for name in batches[0].scalars}
    return Batch(0, np.concatenate([b.ids for b in batches]), np.concatenate([b.vectors for b in batches]), scalars)


def _compare_sampled(hasher: Hasher, sink: Sink, batch: Batch, findings: Findings) -> None:
    found = sink.fetch(batch.ids, with_data=True)
    present = np.isin(batch.ids, found.ids)
    if not present.all():
        findings.note_missing(batch.ids[~present])
    _compare_rows(hasher, batch, found, np.flatnonzero(present), findings)


def _compare_rows(hasher: Hasher, source: Batch, target: Batch, rows: np.ndarray, findings: Findings) -> None:
    """Rows ``rows`` of ``source`` against the target's rows of the same keys, by whole-row hash;
    a differing row is named with its first differing column."""
    where = {pk: i for i, pk in enumerate(target.ids.tolist())}
    if not len(rows):
        return
    mine = _take(source, rows)
    order = np.array([where[pk] for pk in mine.ids.tolist()], dtype=np.intp)
    theirs = _take(target, order)
    ours_hash, theirs_hash = hasher.rows(mine)[0], hasher.rows(theirs)[0]
    findings.compared += len(rows)
    names = ["vector", *(f"field {c.name}" for c in hasher.scalars)]
    for i in np.flatnonzero(ours_hash != theirs_hash):
        left = [words(hasher.vector, mine.vectors[i : i + 1], hasher.seed)]
        right = [words(hasher.vector, theirs.vectors[i : i + 1], hasher.seed)]
        for c in hasher.scalars:
            left.append(words(c, mine.scalars[c.name][i : i + 1], hasher.seed))
            right.append(words(c, theirs.scalars[c.name][i : i + 1], hasher.seed))
        what = next((n for n, x, y in zip(names, left, right, strict=True) if not np.array_equal(x, y)), "key")
        findings.note_difference(f"id {mine.ids[i]}: {what}")


def _look_up(proof: Proof, source: Source, sink: Sink, bounds: tuple[int, int], sample_size: int) -> Findings:
    """Where the target may hold other rows: every source id looked up in it (and compared for
    ``full``), or for ``sample`` the sampled rows alone."""
    findings = Findings()
    hasher = Hasher(proof.seed, proof.rows_hasher.schema, whole=True)
    if proof.mode == "sample":
        positions = _sample_positions(bounds, sample_size)
        _compare_sample(proof, source, sink, positions, findings)
        findings.checked = findings.compared
        return findings
    for batch in source.batches(*bounds, LOOKUP_BATCH):
        batch = batch.normalized()
        found = sink.fetch(batch.ids, with_data=proof.whole)
        present = np.isin(batch.ids, found.ids)
        findings.checked += int(present.sum())
        if not present.all():
            findings.note_missing(batch.ids[~present])
        if proof.whole:
            _compare_rows(hasher, batch, found, np.flatnonzero(present), findings)
    return findings
