"""Shards on threads: how ranges split, and that results come back in order, errors included."""

from __future__ import annotations

import threading

import pytest

from twin import parallel


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize(
    ("n", "min_shard", "align"), [(200, 32, 9), (64, 32, 9), (31, 32, 1), (7, 1, 1), (1000, 1, 7)]
)
def test_shards_cover_the_range_in_order_aligned_and_no_more_than_the_threads(
    threads: int, n: int, min_shard: int, align: int
) -> None:
    with parallel.using_threads(threads):
        bounds = parallel.shard_bounds(n, min_shard=min_shard, align=align)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a < b for a, b in bounds)
    assert all(b == a2 for (_, b), (a2, _) in zip(bounds, bounds[1:], strict=False))  # contiguous
    assert len(bounds) <= threads
    assert all(b % align == 0 for _, b in bounds[:-1])  # every cut on a multiple of align
    assert all(b - a >= min_shard for a, b in bounds[:-1])
    if (-(-n // align)) // (-(-min_shard // align)) >= threads:
        assert len(bounds) == threads  # enough work: every thread gets a shard


def test_no_items_no_shards_and_one_thread_one_shard() -> None:
    assert parallel.shard_bounds(0, min_shard=1) == []
    with parallel.using_threads(1):
        assert parallel.shard_bounds(5000, min_shard=1) == [(0, 5000)]


def test_map_shards_runs_shards_on_several_threads_and_returns_them_in_order() -> None:
    seen: set[int] = set()
    barrier = threading.Barrier(3, timeout=10)  # passes only if three shards run at the same time

    def work(a: int, b: int) -> list[int]:
        seen.add(threading.get_ident())
        barrier.wait()
        return list(range(a, b))

    with parallel.using_threads(3):
        parts = parallel.map_shards(work, parallel.shard_bounds(30, min_shard=10))
    assert [x for p in parts for x in p] == list(range(30))
    assert len(seen) == 3 and threading.get_ident() in seen  # the caller runs a shard too


def test_an_error_in_a_shard_is_raised_after_every_shard_finished() -> None:
    finished: list[int] = []

    def work(a: int, b: int) -> int:
        if a == 10:
            raise ValueError("shard 10 failed")
        finished.append(a)
        return a

    with parallel.using_threads(3), pytest.raises(ValueError, match="shard 10 failed"):
        parallel.map_shards(work, [(0, 10), (10, 20), (20, 30)])
    assert sorted(finished) == [0, 20]


def test_the_setting_is_restored_and_checked() -> None:
    before = parallel.threads()
    with parallel.using_threads(5):
        assert parallel.threads() == 5
    assert parallel.threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1"):
        parallel.set_threads(0)
