"""Planning many collections: which pod of a parallel run copies which collection."""

from __future__ import annotations

import pytest

from milvusdm.instance import balance


def loads(sizes: list[int], chosen: list[int], count: int) -> list[int]:
    return [sum(size for size, worker in zip(sizes, chosen, strict=True) if worker == w) for w in range(count)]


def test_largest_first_to_the_least_loaded_pod():
    sizes = [100, 700, 300, 300, 50]
    chosen = balance(sizes, 2)
    assert chosen == [1, 0, 1, 1, 0]
    assert loads(sizes, chosen, 2) == [750, 700]


@pytest.mark.parametrize("count", [1, 3, 8])
def test_every_collection_goes_to_one_pod_of_the_run(count):
    sizes = [5, 0, 9, 9, 1, 40, 3]
    chosen = balance(sizes, count)
    assert len(chosen) == len(sizes) and all(0 <= w < count for w in chosen)
    assert max(loads(sizes, chosen, count)) <= max(sizes) + sum(sizes) / count  # the greedy bound
    assert chosen == balance(list(sizes), count)  # every pod plans the same


def test_more_pods_than_collections_leaves_some_idle():
    assert sorted(balance([10, 20], 4)) == [0, 1]
