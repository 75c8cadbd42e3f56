"""Shared start-up for benchmark scripts: a Redis (REDIS_URL, else a private server) and Django settings."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def redis_url() -> Iterator[str]:
    """REDIS_URL if set, else a redis-server started for this run and stopped afterwards."""
    from tests.servers import RedisServer

    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer.start()
    try:
        yield server.url
    finally:
        server.stop()


def configure_django(url: str, **tagcache: object) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_tagcache"],
        CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}},
        TAGCACHE={"CACHE": "default", **tagcache},
    )
    django.setup()


def paired(
    ours: Callable[[], object], theirs: Callable[[], object], *, rounds: int, repeat: int
) -> tuple[float, float, float]:
    """Median microseconds per call of each side, and the median of the per-run ratios.

    Each run times ``rounds`` calls of one side then of the other, alternating which goes first, so
    that a change of load on a shared machine affects both sides of a ratio alike.
    """
    ours_us: list[float] = []
    theirs_us: list[float] = []
    ratios: list[float] = []
    for run in range(repeat):
        pair = [(ours, ours_us), (theirs, theirs_us)]
        for func, into in pair if run % 2 == 0 else reversed(pair):
            started = time.perf_counter()
            for _ in range(rounds):
                func()
            into.append((time.perf_counter() - started) / rounds * 1e6)
        ratios.append(ours_us[-1] / theirs_us[-1])
    return statistics.median(ours_us), statistics.median(theirs_us), statistics.median(ratios)


def result(
    row: str, ours: float, baseline: float | None, ratio: float | None, bar: str, unit: str = "us"
) -> None:
    """Print one row for the summary table of ``python -m benchmarks`` (a line starting with RESULT)."""
    fields = {"row": row, "ours": ours, "baseline": baseline, "ratio": ratio, "bar": bar, "unit": unit}
    print("RESULT " + json.dumps(fields))
