"""Shared start-up for benchmark scripts: a Redis (REDIS_URL, else a private server) and Django settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
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
