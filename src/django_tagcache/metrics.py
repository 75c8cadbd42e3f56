"""In-process counters of what the cache did.

Process-global by nature (one set of counters per worker process); ``reset()`` exists for tests.
"""

from __future__ import annotations

import threading
from collections import Counter

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
)

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def incr(name: str, amount: int = 1) -> None:
    """Add ``amount`` to one counter."""
    with _lock:
        _counts[name] += amount


def incr_many(counts: dict[str, int]) -> None:
    """Add to several counters at once."""
    with _lock:
        _counts.update(counts)


def snapshot() -> dict[str, int]:
    """Every counter, including those still at zero."""
    with _lock:
        return {name: _counts.get(name, 0) for name in COUNTERS}


def reset() -> None:
    with _lock:
        _counts.clear()
