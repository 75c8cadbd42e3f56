"""In-process counters of what the cache did, and the time it spent talking to Redis.

Process-global by nature (one set of counters per worker process); ``reset()`` exists for tests.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

COUNTERS = (
    "hits",
    "misses",
    "stores",
    "refused_writes",
    "oversized",
    "invalidations",
    "tags_invalidated",
    "entries_removed",
    "retries",
    "failures",
    "lost_invalidations",
    "circuit_open",
    "circuit_half_open",
    "circuit_closed",
    "early_recomputes",
    "stampede_waits",
    "stampede_timeouts",
    "stale_served",
    "audit_failures",
    "unreadable",
    "unpicklable",
    # Cross-service events applied by a consumer in this process (django_tagcache.events).
    "events_applied",
    "events_duplicate",
    "events_dead_lettered",
    # The near cache (L1) and the request cache (L0): see caching/near.py.
    "near_hits",
    "near_misses",
    "near_evictions",
    "near_pushes",
    "near_flushes",
    "near_restarts",
    "request_hits",
)

_lock = threading.Lock()
_counts: Counter[str] = Counter()
# Per operation: [number of calls, seconds spent]. Operation names are a small fixed set
# ("get", "write", "invalidate", ...): each becomes a Prometheus label value.
_durations: dict[str, list[float]] = {}


def incr(name: str, amount: int = 1) -> None:
    """Add ``amount`` to one counter."""
    with _lock:
        _counts[name] += amount


def incr_many(counts: dict[str, int]) -> None:
    """Add to several counters at once."""
    with _lock:
        for name, amount in counts.items():  # not Counter.update(): an ABC check per call (hot path)
            _counts[name] += amount


def near_hit() -> None:
    """Count one read served from the near cache (``hits`` and ``near_hits``): its hot path."""
    with _lock:
        _counts["hits"] += 1
        _counts["near_hits"] += 1


def snapshot() -> dict[str, int]:
    """Every counter, including those still at zero."""
    with _lock:
        return {name: _counts.get(name, 0) for name in COUNTERS}


def observe_duration(op: str, seconds: float) -> None:
    """Count one call of ``op`` that took ``seconds`` (wall clock, retries included)."""
    with _lock:
        slot = _durations.get(op)
        if slot is None:
            _durations[op] = [1, seconds]
        else:
            slot[0] += 1
            slot[1] += seconds


def observe_read(seconds: float, outcome: str) -> None:
    """Count one read that took ``seconds`` and its ``outcome`` ("hits" or "misses"), under one
    lock: :func:`observe_duration` and :func:`incr` together, on every read's path."""
    with _lock:
        _counts[outcome] += 1
        slot = _durations.get("read")
        if slot is None:
            _durations["read"] = [1, seconds]
        else:
            slot[0] += 1
            slot[1] += seconds


@contextmanager
def timed(op: str) -> Iterator[None]:
    """Time the block as one call of ``op``; a block that raises is timed too."""
    started = time.perf_counter()
    try:
        yield
    finally:
        observe_duration(op, time.perf_counter() - started)


def timings() -> dict[str, tuple[int, float]]:
    """Per operation: (calls, seconds spent), for every operation observed so far."""
    with _lock:
        return {op: (int(count), total) for op, (count, total) in sorted(_durations.items())}


# Gauges read at each snapshot (the near cache's size): name of a source -> what it reports now.
_gauge_sources: dict[str, Callable[[], dict[str, int]]] = {}


def add_gauges(source: str, read: Callable[[], dict[str, int]]) -> None:
    """Report the values ``read()`` returns as gauges (replacing any earlier ``source`` of that name)."""
    with _lock:
        _gauge_sources[source] = read


def gauges() -> dict[str, int]:
    """Every gauge now, summed over their sources."""
    with _lock:
        sources = list(_gauge_sources.values())
    total: Counter[str] = Counter()
    for read in sources:
        total.update(read())
    return dict(total)


def reset() -> None:
    with _lock:
        _counts.clear()
        _durations.clear()
