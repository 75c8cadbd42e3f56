"""Django's built-in Redis backend. Its raw client is only reachable through private API.

Every private name used is in this module, and ``tests/test_backends.py`` fails loudly if a
Django release changes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.cache.backends.redis import RedisCache

if TYPE_CHECKING:
    import redis
    from django.core.cache.backends.base import BaseCache


def is_builtin(cache: BaseCache) -> bool:
    return isinstance(cache, RedisCache)


def raw_client(cache: BaseCache) -> redis.Redis:
    """The client Django's backend writes with (its first server)."""
    # RedisCache._cache is a RedisCacheClient; get_client(write=True) picks the primary server.
    cache_client: Any = cache._cache  # type: ignore[attr-defined]
    client: redis.Redis = cache_client.get_client(None, write=True)
    return client
