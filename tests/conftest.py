from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from django_tagcache import TagCache, metrics
from django_tagcache.api import get_store, reset_stores

BACKENDS = ["default", "builtin"]


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts from an empty database and fresh stores and counters."""
    from django.conf import settings as django_settings

    client = redis.Redis.from_url(django_settings.REDIS_URL)
    client.flushdb()
    reset_stores()
    metrics.reset()
    yield
    client.close()


@pytest.fixture(params=BACKENDS)
def alias(request: pytest.FixtureRequest) -> str:
    """Run the test once per supported backend."""
    return str(request.param)


@pytest.fixture
def tc(alias: str) -> TagCache:
    return TagCache(alias)


@pytest.fixture
def raw(alias: str) -> redis.Redis:
    """The same raw client the store uses."""
    return get_store(alias).client
