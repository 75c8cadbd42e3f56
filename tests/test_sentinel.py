"""Redis Sentinel through django-redis' SentinelClient: a real master and a real sentinel on loopback."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from django_tagcache import TagCache
from tests.servers import RedisServer, find_redis_server, free_port


@pytest.fixture(scope="module")
def sentinel() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master, and a sentinel watching it under the name "tagcache"."""
    binary = find_redis_server()
    master = RedisServer.start(binary=binary)
    config = Path(tempfile.mkdtemp(prefix="tagcache-sentinel-"), "sentinel.conf")
    port = free_port()
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor tagcache 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds tagcache 5000\n"
    )
    watcher = RedisServer.start(binary=binary, port=port, config_file=str(config), extra_args=("--sentinel",))
    try:
        yield master, watcher
    finally:
        watcher.stop()
        master.stop()
        config.unlink(missing_ok=True)
        os.rmdir(config.parent)


@pytest.fixture
def sentinel_tc(settings: Any, sentinel: tuple[RedisServer, RedisServer]) -> TagCache:
    master, watcher = sentinel
    redis.Redis(port=master.port).flushdb()
    settings.CACHES = {
        **settings.CACHES,
        "sentinel": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://tagcache/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [("127.0.0.1", watcher.port)],
            },
        },
    }
    for _ in range(50):  # the sentinel answers for the master once it has looked at it
        if redis.Redis(port=watcher.port).execute_command("SENTINEL", "MASTERS"):  # type: ignore[no-untyped-call]
            break
        time.sleep(0.1)
    return TagCache("sentinel")


def test_tags_work_through_sentinel(sentinel_tc: TagCache, sentinel: tuple[RedisServer, RedisServer]) -> None:
    master, _ = sentinel
    assert sentinel_tc.get_or_set("k", lambda: "v", tags=["t", "u"]) == "v"
    assert sentinel_tc.get("k") == "v"
    entry = sentinel_tc.store.keys.entry("k")
    assert redis.Redis(port=master.port).exists(entry) == 1  # written to the master sentinel named
    assert sentinel_tc.invalidate_tags("u") == 1
    assert sentinel_tc.get("k") is None


def test_the_race_is_closed_through_sentinel(sentinel_tc: TagCache) -> None:
    def compute() -> str:
        sentinel_tc.invalidate_tags("t")
        return "stale"

    assert sentinel_tc.get_or_set("k", compute, tags=["t"]) == "stale"
    assert sentinel_tc.get("k") is None
