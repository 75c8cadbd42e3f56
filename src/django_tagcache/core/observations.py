"""Labelled counters and histograms of consistency: stale reads found, invalidation lag, misses.

The plain counters of :mod:`.metrics` count what the cache did; these say how fresh what it
served was, and how quickly it caught up. Labels are few and bounded: a staleness class, an
outcome, a path, or a key or tag prefix (at most :data:`MAX_PREFIXES` distinct ones per process,
the rest counted as ``"other"``), so that the Prometheus series stay few.

Process-global by nature, like :mod:`.metrics`; ``reset()`` exists for tests. No Django in here.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import Counter
from typing import Final

#: Upper bounds (seconds) of the histogram buckets: from a fast Redis round trip to a day.
BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0,
)  # fmt: skip

#: Distinct prefixes one process labels; any further one is counted as "other".
MAX_PREFIXES: Final = 100
OTHER: Final = "other"

# Where a commit's invalidation is measured from (``invalidation_lag`` path label):
#   "commit"  the transaction's commit hooks ran, to the invalidation applied in Redis;
#   "outbox"  a row of the outbox was written, to its invalidation applied (a drain or replay).
# Cross-service events add their own path here ("consumer": a stream entry appended by another
# service, to its invalidation applied by this one); the export and dashboard follow the label.
LAG_PATHS: Final = ("commit", "outbox")

_PREFIX = re.compile(r"[^:0-9]*")

_lock = threading.Lock()
_counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
# (histogram name, labels) -> [bucket counts..., +Inf count], and the sum of observed values.
_buckets: dict[tuple[str, tuple[str, ...]], list[int]] = {}
_sums: dict[tuple[str, tuple[str, ...]], float] = {}
_prefixes: set[str] = set()


def prefix_of(text: str) -> str:
    """The bounded label of a key or tag: its head before the first ``:`` or digit.

    ``shop.product:5`` gives ``shop.product``, ``category:7`` gives ``category``, ``fn:app.top``
    gives ``fn`` (callers label ``@cached`` functions by name instead), ``price-12`` gives ``price-``.
    Past :data:`MAX_PREFIXES` distinct labels, new ones become ``"other"``.
    """
    match = _PREFIX.match(text)
    head = (match.group(0) if match else "") or OTHER
    if head in _prefixes:
        return head
    with _lock:
        if len(_prefixes) >= MAX_PREFIXES:
            return OTHER
        _prefixes.add(head)
    return head


def bounded(label: str) -> str:
    """``label`` if this process has room for it (see :data:`MAX_PREFIXES`), else ``"other"``."""
    if label in _prefixes:
        return label
    with _lock:
        if len(_prefixes) >= MAX_PREFIXES:
            return OTHER
        _prefixes.add(label)
    return label


def count(name: str, labels: tuple[str, ...] = (), amount: int = 1) -> None:
    """Add ``amount`` to the counter ``name`` with ``labels``."""
    with _lock:
        _counts[name, labels] += amount


def observe(name: str, value: float, labels: tuple[str, ...] = ()) -> None:
    """Record ``value`` (seconds) in the histogram ``name`` with ``labels``."""
    slot = bisect.bisect_left(BUCKETS, value)
    key = (name, labels)
    with _lock:
        buckets = _buckets.get(key)
        if buckets is None:
            buckets = _buckets[key] = [0] * (len(BUCKETS) + 1)
            _sums[key] = 0.0
        buckets[slot] += 1
        _sums[key] += value


def counters(name: str) -> dict[tuple[str, ...], int]:
    """Every label set of counter ``name``, with its value."""
    with _lock:
        return {labels: value for (found, labels), value in _counts.items() if found == name}


def histograms(name: str) -> dict[tuple[str, ...], tuple[list[int], float]]:
    """Every label set of histogram ``name``: (cumulative counts per bucket then +Inf, sum)."""
    with _lock:
        found = {labels: (list(b), _sums[n, labels]) for (n, labels), b in _buckets.items() if n == name}
    out: dict[tuple[str, ...], tuple[list[int], float]] = {}
    for labels, (buckets, total) in found.items():
        running, cumulative = 0, []
        for value in buckets:
            running += value
            cumulative.append(running)
        out[labels] = (cumulative, total)
    return out


def reset() -> None:
    with _lock:
        _counts.clear()
        _buckets.clear()
        _sums.clear()
        _prefixes.clear()
