"""How a target scan is cut into key ranges: adjacent, covering every int64, about equal."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from milvusdm.sinks import KeySpan

LOW, HIGH = -(2**63), 2**63 - 1


def holds(ranges, key: int) -> int:
    """In how many ranges ``key`` falls."""
    return sum((low is None or key >= low) and (high is None or key < high) for low, high in ranges)


def holds_count(keys: np.ndarray, bounds) -> int:
    low, high = bounds
    inside = np.ones(len(keys), bool)
    if low is not None:
        inside &= keys >= low
    if high is not None:
        inside &= keys < high
    return int(inside.sum())


@pytest.mark.parametrize(
    ("span", "per_range", "parts"),
    [
        (KeySpan(0, 999_999, 1_000_000), 100_000, 10),
        (KeySpan(LOW + 1, HIGH - 1, 3_000), 200, 15),
        (KeySpan(5, 5, 1), 100, 1),
        (KeySpan(0, 3, 4_000), 100, 4),  # never more ranges than distinct keys
        (KeySpan(0, 10, 0), 100, 1),
    ],
)
def test_ranges_are_adjacent_open_at_both_ends_and_cover_every_key_once(span, per_range, parts):
    ranges = span.ranges(per_range)
    assert len(ranges) == parts
    assert ranges[0][0] is None and ranges[-1][1] is None
    assert all(a[1] == b[0] for a, b in pairwise(ranges))
    probes = [LOW, LOW + 1, -1, 0, 1, span.lowest, span.highest, span.highest + 1, HIGH]
    probes += [edge for edge, _ in ranges[1:]] + [edge - 1 for edge, _ in ranges[1:]]
    assert all(holds(ranges, key) == 1 for key in probes if LOW <= key <= HIGH)


def test_evenly_spread_keys_fall_evenly():
    keys = np.arange(0, 1_000_000, 7)
    ranges = KeySpan(int(keys[0]), int(keys[-1]), len(keys)).ranges(10_000)
    sizes = [holds_count(keys, r) for r in ranges]
    assert sum(sizes) == len(keys) and max(sizes) - min(sizes) <= 2
