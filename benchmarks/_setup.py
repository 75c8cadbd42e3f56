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


SHOP_APPS = ("django.contrib.auth", "django.contrib.contenttypes", "tests.testapp")


def configure_django(
    url: str,
    *,
    apps: tuple[str, ...] = (),
    database: str | None = None,
    counting: bool = False,
    cache_options: dict[str, object] | None = None,
    extra: dict[str, object] | None = None,
    tagcache: dict[str, object] | None = None,
) -> None:
    """Configure Django for one benchmark process: django-redis at ``url``, this app, and ``apps``.

    ``database`` (an SQLite path, or ":memory:") adds a database and creates the tables;
    ``counting`` counts the commands sent (tests/counting.py); ``extra`` adds settings.
    """
    import django
    from django.conf import settings

    options = dict(cache_options or {})
    if counting:
        from tests.counting import CountingConnection

        options["CONNECTION_POOL_KWARGS"] = {"connection_class": CountingConnection}
    installed = [app for app in apps if app != "tests.testapp"] + ["django_tagcache"]
    installed += ["tests.testapp"] if "tests.testapp" in apps else []
    settings.configure(
        INSTALLED_APPS=installed,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": database}} if database else {},
        CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url, "OPTIONS": options}},
        TAGCACHE={"CACHE": "default", **(tagcache or {})},
        USE_TZ=True,
        **(extra or {}),
    )
    django.setup()
    if database:
        from django.core.management import call_command

        call_command("migrate", run_syncdb=True, verbosity=0)


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
