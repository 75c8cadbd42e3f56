"""How to reach the raw redis-py client behind each supported cache backend.

Supported: ``django_redis.cache.RedisCache`` (default and Sentinel clients, and Redis Cluster
through :class:`django_tagcache.cluster.RedisClusterClient`) and Django's own
``django.core.cache.backends.redis.RedisCache``; and Django's ``LocMemCache``, which has no Redis
client and is served by the in-process store (:mod:`django_tagcache.core.memory`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, TypeGuard

from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from redis.cluster import RedisCluster

from . import builtin

if TYPE_CHECKING:
    import redis
    from django.core.cache.backends.base import BaseCache

Kind = Literal["django_redis", "django", "locmem"]

SUPPORTED = (
    "django_redis.cache.RedisCache",
    "django.core.cache.backends.redis.RedisCache",
    "django.core.cache.backends.locmem.LocMemCache (in-process, for tests and local development)",
)


def backend_kind(cache: BaseCache) -> Kind | None:
    """Which supported family a cache instance belongs to, or None."""
    try:
        from django_redis.cache import RedisCache as DjangoRedisCache
    except ImportError:  # pragma: no cover - django-redis is a dependency
        DjangoRedisCache = None
    if DjangoRedisCache is not None and isinstance(cache, DjangoRedisCache):
        return "django_redis"
    if builtin.is_builtin(cache):
        return "django"
    if isinstance(cache, LocMemCache):
        return "locmem"  # served by the in-process store (django_tagcache.core.memory), not Redis
    return None


def is_cluster(client: object) -> TypeGuard[RedisCluster]:
    """Whether a raw client talks to a Redis Cluster (django-redis with RedisClusterClient)."""
    return isinstance(client, RedisCluster)


def raw_client(alias: str) -> redis.Redis:
    """The redis-py client that writes for cache ``alias``; never a second connection pool.

    For a Redis Cluster it is the alias' one ``redis.cluster.RedisCluster`` (see :func:`is_cluster`);
    a cluster that cannot be reached raises the connection error behind django-redis'
    ``ConnectionInterrupted`` (callers then fail open, as for any connection error).
    """
    cache = caches[alias]
    kind = backend_kind(cache)
    if kind == "django_redis":
        from django_redis import get_redis_connection
        from django_redis.exceptions import ConnectionInterrupted

        try:
            client: redis.Redis = get_redis_connection(alias, write=True)
        except ConnectionInterrupted as exc:
            if isinstance(exc.__cause__, Exception):
                raise exc.__cause__ from exc
            raise
        return client
    if kind == "django":
        return builtin.raw_client(cache)
    if kind == "locmem":
        raise ImproperlyConfigured(
            f"Cache {alias!r} uses LocMemCache: django-tagcache serves it from its in-process store, "
            "which has no Redis client."
        )
    raise ImproperlyConfigured(
        f"Cache {alias!r} uses {type(cache).__module__}.{type(cache).__qualname__}, which django-tagcache "
        f"does not support; use one of: {', '.join(SUPPORTED)}."
    )
