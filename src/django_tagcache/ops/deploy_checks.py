"""System checks about how the cache alias is set up for production: W005 and W006.

Kept apart from :mod:`django_tagcache.checks` (settings, templates, Redis' eviction policy) because
they judge a deployment choice, not a mistake: each may be silenced where it is deliberate.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Warning
from django.core.exceptions import ImproperlyConfigured

from ..conf import conf

W005 = "django_tagcache.W005"
W006 = "django_tagcache.W006"
_LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
_REDIS = ("django_redis.cache.RedisCache", "django.core.cache.backends.redis.RedisCache")


def _tagcache_alias() -> tuple[str, dict[str, Any]] | None:
    """TAGCACHE['CACHE'] and its CACHES entry, or None when E001/E002 already report a problem."""
    try:
        alias = conf.CACHE
    except ImproperlyConfigured:
        return None
    entry = settings.CACHES.get(alias)
    return (alias, entry) if isinstance(entry, dict) else None


def check_in_process_store(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W005: the tag cache is the in-process store (LocMemCache) while DEBUG is False."""
    found = _tagcache_alias()
    if found is None or settings.DEBUG or found[1].get("BACKEND") != _LOCMEM:
        return []
    return [
        Warning(
            f"The tag cache (cache {found[0]!r}) is LocMemCache, served by django-tagcache's in-process "
            "store, and DEBUG is False: each process has its own entries, and an invalidation in one "
            "process does not reach the others.",
            hint="Point TAGCACHE['CACHE'] at a Redis cache alias in production; the in-process store is "
            f"meant for tests and local development. Silence {W005} where that is deliberate.",
            id=W005,
        )
    ]


def _has_socket_timeout(entry: dict[str, Any]) -> bool:
    options = entry.get("OPTIONS") or {}
    pool = options.get("CONNECTION_POOL_KWARGS") or {}
    if options.get("SOCKET_TIMEOUT") or options.get("socket_timeout") or pool.get("socket_timeout"):
        return True
    locations = entry.get("LOCATION") or []
    if isinstance(locations, str):
        locations = locations.split(",") if "," in locations else [locations]
    # redis-py also takes it from each URL: redis://host:6379/0?socket_timeout=0.25
    queries = [parse_qs(urlsplit(str(location)).query) for location in locations]
    return bool(queries) and all("socket_timeout" in query for query in queries)


def check_socket_timeouts(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W006: the tag cache's Redis alias sets no socket timeout, so a hung Redis hangs requests."""
    found = _tagcache_alias()
    if found is None or found[1].get("BACKEND") not in _REDIS or _has_socket_timeout(found[1]):
        return []
    alias, entry = found
    # django-redis spells its options in capitals, Django's own backend passes them to redis-py as is.
    read, connect = (
        ("SOCKET_TIMEOUT", "SOCKET_CONNECT_TIMEOUT")
        if entry["BACKEND"] == _REDIS[0]
        else ("socket_timeout", "socket_connect_timeout")
    )
    return [
        Warning(
            f"Cache {alias!r} sets no socket timeout: redis-py then waits for ever on a Redis that "
            "accepted the connection but stopped answering, and no retry budget or circuit breaker "
            "can end that wait.",
            hint=f'Add "OPTIONS": {{"{read}": 0.25, "{connect}": 0.25}} (seconds) to CACHES[{alias!r}]; '
            'see "Set socket timeouts" in the resilience docs.',
            id=W006,
        )
    ]
