"""Redis Sentinel through django-redis' SentinelClient: a real master and a real sentinel on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from django_tagcache import TagCache, TagCacheUnavailable
from tests.aio import AsyncAPI
from tests.servers import RedisServer, find_redis_server, free_port, start_replica


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


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    """The tests through sentinel_tc run on the blocking API and on its asyncio twins (tests/aio.py)."""
    return str(request.param)


@pytest.fixture
def sentinel_tc(settings: Any, sentinel: tuple[RedisServer, RedisServer], api: str) -> Iterator[TagCache]:
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
    if api == "sync":
        yield TagCache("sentinel")
        return
    adapter = AsyncAPI(TagCache("sentinel"))
    yield cast("TagCache", adapter)
    adapter.close()


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


@pytest.fixture
def failover_set(settings: Any) -> Iterator[tuple[RedisServer, RedisServer, RedisServer]]:
    """A master, one replica and a sentinel watching them, for the "lossy" alias: tests kill the master.

    The watched name is new each time: django-redis keeps one connection pool per LOCATION.
    """
    binary = find_redis_server()
    master = RedisServer.start(binary=binary)
    replica = start_replica(master, binary)
    config = Path(tempfile.mkdtemp(prefix="tagcache-sentinel-"), "sentinel.conf")
    port = free_port()
    name = f"lossy{port}"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor {name} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {name} 60000\nsentinel failover-timeout {name} 10000\n"
    )
    watcher = RedisServer.start(binary=binary, port=port, config_file=str(config), extra_args=("--sentinel",))
    sentinels = redis.Redis(port=watcher.port)
    for _ in range(300):  # the sentinel can promote the replica once it has talked to it
        known = sentinels.execute_command("SENTINEL", "REPLICAS", name)  # type: ignore[no-untyped-call]
        if known and known[0][b"flags"] == b"slave" and known[0][b"master-link-status"] == b"ok":
            break
        time.sleep(0.1)
    settings.CACHES = {
        **settings.CACHES,
        "lossy": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{name}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [("127.0.0.1", watcher.port)],
                "SOCKET_TIMEOUT": 1,
                "SOCKET_CONNECT_TIMEOUT": 1,
            },
        },
    }
    try:
        yield master, replica, watcher
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
        for server in (watcher, replica, master):
            server.stop()
        config.unlink(missing_ok=True)
        os.rmdir(config.parent)


def _fail_over(watcher: RedisServer, replica: RedisServer) -> None:
    """Force the sentinel to promote the replica, and wait until it serves as the master."""
    name = f"lossy{watcher.port}"
    redis.Redis(port=watcher.port).execute_command("SENTINEL", "FAILOVER", name)  # type: ignore[no-untyped-call]
    for _ in range(300):
        if replica.client().info("replication").get("role") == "master":
            address = redis.Redis(port=watcher.port).execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name
            )
            if int(address[1]) == replica.port:
                return
        time.sleep(0.05)
    raise AssertionError("the sentinel did not promote the replica")


def test_a_failover_cannot_bring_back_a_generation_an_invalidation_replaced(
    settings: Any, failover_set: tuple[RedisServer, RedisServer, RedisServer]
) -> None:
    """The replica misses an invalidation (stopped), the master dies, the replica is promoted.

    The writer computed its value before the invalidation: its write must not pass on the new
    master. An invalidation the replica did not acknowledge must not count as done (it raises,
    and is retried, as the outbox or the caller does), or the old generation comes back with it.
    """
    master, replica, watcher = failover_set
    settings.TAGCACHE = {"CACHE": "lossy", "INVALIDATION_REPLICAS": 1, "INVALIDATION_REPLICA_TIMEOUT": 0.2}
    tc = TagCache("lossy")
    done: list[bool] = []

    def compute() -> str:
        # The replica misses what follows: stopped, its link closed by the master (what the master
        # sent before stays readable in the replica's socket buffer; nothing after reaches it).
        os.kill(replica.process.pid, signal.SIGSTOP)
        master.client().client_kill_filter(_type="replica")
        try:
            tc.invalidate_tags("t")
            done.append(True)
        except TagCacheUnavailable:
            done.append(False)
        master.process.kill()  # the master dies before the replica got the invalidation
        master.process.wait()
        os.kill(replica.process.pid, signal.SIGCONT)
        _fail_over(watcher, replica)
        for _ in range(50):  # the client finds the new master (through the sentinel)
            with contextlib.suppress(redis.ConnectionError):
                if (
                    redis.Redis(port=replica.port).info("replication")["role"] == "master"
                    and tc.store.client.ping()
                ):
                    break
        if not done[0]:
            # Not done: retried (the outbox, or the caller), on the new master. It applies there, but
            # with no replica left it cannot be acknowledged, so it raises again (and stays pending).
            with contextlib.suppress(TagCacheUnavailable):
                tc.invalidate_tags("t")
        return "computed before the invalidation"

    assert tc.get_or_set("k", compute, tags=["t"]) == "computed before the invalidation"
    assert tc.get("k") is None


def test_an_invalidation_returns_once_the_replica_holds_it(
    settings: Any, failover_set: tuple[RedisServer, RedisServer, RedisServer]
) -> None:
    _master, replica, _watcher = failover_set
    settings.TAGCACHE = {"CACHE": "lossy", "INVALIDATION_REPLICAS": 1}
    tc = TagCache("lossy")
    tc.set("k", "v", tags=["t"])
    generation = tc.store.keys.generation("t")
    assert tc.invalidate_tags("t") == 1
    # WAIT returned: the replica already holds the deletion and the new generation.
    assert replica.client().get(tc.store.keys.entry("k")) is None
    assert replica.client().get(generation) == tc.store.client.get(generation)
