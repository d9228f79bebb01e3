"""Data-parallel shards on a few threads: a host's cohort, a batch's rows, the coverage samples.

torch's kernels and hashlib's digests release the interpreter lock, so threads that each take a share
of the rows keep several cores busy without torch's intra-op threads — which spin-wait for a busy core
(docs/performance.md): each thread here runs its share start to end, and waits only once, at the end.

Shards never change a result: each device's or sample's arithmetic is the same whatever shard it is in
(a cohort's training and the batch-invariant forward pass are tested bit for bit), so a run gives the
same tables with one thread or many. The number of threads is the process's: every core it may run on
(``os.sched_getaffinity``) unless a run sets it (``twin run --threads``; Ray workers use one each).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

__all__ = ["available_cores", "map_shards", "set_threads", "shard_bounds", "threads", "using_threads"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_threads: int | None = None  # None: every available core


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def threads() -> int:
    """Threads :func:`map_shards` uses now."""
    return _threads if _threads is not None else available_cores()


def set_threads(n: int | None) -> int | None:
    """Use ``n`` threads from now on (None: every available core); returns the previous setting."""
    global _threads
    if n is not None and n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    previous, _threads = _threads, n
    return previous


@contextmanager
def using_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` threads (None: every available core) inside the block, then restore the setting."""
    previous = set_threads(n)
    try:
        yield
    finally:
        set_threads(previous)


def shard_bounds(n_items: int, *, min_shard: int, align: int = 1) -> list[tuple[int, int]]:
    """Split ``range(n_items)`` into at most :func:`threads` contiguous shards.

    Every shard but the last holds ≥ ``min_shard`` items and ends on a multiple of ``align`` (e.g. a
    packed batch's rows, so the batches are the same however many shards there are).
    """
    if n_items <= 0:
        return []
    align = max(1, align)
    blocks = -(-n_items // align)
    per_shard = -(-max(1, min_shard) // align)  # fewest blocks in a shard
    k = max(1, min(threads(), blocks // per_shard))
    bounds, start = [], 0
    for i in range(k):
        end = n_items if i == k - 1 else min(n_items, (blocks * (i + 1) // k) * align)
        if end > start:
            bounds.append((start, end))
        start = end
    return bounds


def map_shards[T](fn: Callable[[int, int], T], bounds: Sequence[tuple[int, int]]) -> list[T]:
    """``[fn(start, end) for each shard]``, the shards on parallel threads (this thread runs the first).

    An exception in any shard is raised here, after every shard has finished.
    """
    if len(bounds) <= 1:
        return [fn(a, b) for a, b in bounds]
    pool = _executor(len(bounds) - 1)
    futures = [pool.submit(fn, a, b) for a, b in bounds[1:]]
    try:
        first = fn(*bounds[0])
    finally:
        rest = [f.exception() for f in futures]  # wait for every shard before anything is raised
    for error in rest:
        if error is not None:
            raise error
    return [first, *(f.result() for f in futures)]


def _executor(size: int) -> ThreadPoolExecutor:
    """The process's shard threads, at least ``size`` of them (grown on demand, never shrunk)."""
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < size:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="twin-shard")
            _pool_size = size
            if old is not None:
                old.shutdown(wait=False)
        return _pool
