"""How each supported backend hands over its raw client, and what breaks loudly if Django changes."""

from __future__ import annotations

import pytest
import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from django_tagcache.backends import backend_kind, raw_client


def test_django_builtin_backend_private_api_is_still_there() -> None:
    """Django's RedisCache exposes no raw client: backends/builtin.py reaches it through
    ``RedisCache._cache`` (a RedisCacheClient) and ``RedisCacheClient.get_client(key, write=)``.
    If this fails, a Django release changed them and backends/builtin.py must follow."""
    cache = caches["builtin"]
    assert isinstance(cache, RedisCache)
    inner = cache._cache
    assert isinstance(inner, RedisCacheClient)
    client = inner.get_client(None, write=True)
    assert isinstance(client, redis.Redis)
    assert client.ping()


@pytest.mark.parametrize("alias", ["default", "builtin"])
def test_raw_client_is_the_backends_own(alias: str) -> None:
    client = raw_client(alias)
    caches[alias].set("through-django", 1)
    key = caches[alias].make_key("through-django")
    assert client.exists(key) == 1  # the very server (and database) Django's cache writes to


def test_unsupported_backend_is_refused_clearly() -> None:
    from django.core.exceptions import ImproperlyConfigured

    assert backend_kind(caches["dummy"]) is None
    with pytest.raises(ImproperlyConfigured, match="does not support"):
        raw_client("dummy")
