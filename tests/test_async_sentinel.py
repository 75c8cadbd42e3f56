"""The asyncio API through a real Sentinel: round trip, single flight, cancellation, a dead master,
and ``INVALIDATION_REPLICAS`` (WAIT on the loop's connection).

For the replicas: a master, one replica and a sentinel (the ``failover_set`` of tests/test_sentinel.py). The
replica is paused with SIGSTOP (its link stays open, it acknowledges nothing) or killed; the
order of events is read off the servers (the master lists the invalidation's connection as
blocked in WAIT), never timed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from django_tagcache import TagCache, TagCacheUnavailable
from django_tagcache.caching.stores import get_async_store
from tests.faults import RESILIENCE
from tests.keyspace import Keys
from tests.servers import RedisServer, find_redis_server, free_port
from tests.test_sentinel import failover_set  # noqa: F401 - the fixture

Servers = tuple[RedisServer, RedisServer, RedisServer]
#: The master's name at this module's sentinel.
NAME = "asynctagcache"


def _lossy(settings: Any, replica_timeout: float) -> TagCache:
    # A socket timeout longer than the WAIT it may have to sit through.
    lossy = settings.CACHES["lossy"]
    settings.CACHES = {
        **settings.CACHES,
        "lossy": {**lossy, "OPTIONS": {**lossy["OPTIONS"], "SOCKET_TIMEOUT": 60}},
    }
    settings.TAGCACHE = {
        "CACHE": "lossy",
        "INVALIDATION_REPLICAS": 1,
        "INVALIDATION_REPLICA_TIMEOUT": replica_timeout,
    }
    return TagCache("lossy")


def _waiting(master: RedisServer) -> bool:
    """Whether a client of the master is blocked in WAIT."""
    return any(
        client.get("cmd") == "wait" and "b" in client.get("flags", "")
        for client in master.client().client_list()
    )


def test_ainvalidate_returns_only_once_the_replica_holds_it(settings: Any, failover_set: Servers) -> None:  # noqa: F811
    master, replica, _watcher = failover_set
    tc = _lossy(settings, replica_timeout=60)
    tc.set("k", "v", tags=["t"])
    entry, generation = tc.store.keys.entry("k"), tc.store.keys.generation("t")

    async def main() -> tuple[bool, int]:
        await tc.aget("warm the loop's connection")
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            purge = asyncio.create_task(tc.ainvalidate_tags("t"))
            while not _waiting(master):  # the script ran; its WAIT is pending at the master
                assert not purge.done(), purge
                await asyncio.sleep(0.01)
            returned_early = purge.done()
        finally:
            os.kill(replica.process.pid, signal.SIGCONT)
        return returned_early, await purge

    assert asyncio.run(main()) == (False, 1)
    # Returned: the replica already holds the deletion and the new generation.
    assert replica.client().get(entry) is None
    assert replica.client().get(generation) == master.client().get(generation)


@pytest.mark.parametrize("how", ["paused", "killed"])
def test_ainvalidate_raises_when_the_replica_cannot_acknowledge(
    settings: Any,
    failover_set: Servers,  # noqa: F811 - the fixture imported above
    how: str,
) -> None:
    master, replica, _watcher = failover_set
    tc = _lossy(settings, replica_timeout=0.2)
    tc.set("k", "v", tags=["t"])
    entry = tc.store.keys.entry("k")
    if how == "paused":
        os.kill(replica.process.pid, signal.SIGSTOP)  # the fixture resumes it
    else:
        os.kill(replica.process.pid, signal.SIGKILL)  # not reaped: the fixture's stop() does it
        for _ in range(500):  # the master has seen the replica's link close
            if master.client().info("replication")["connected_slaves"] == 0:
                break
            redis.Redis(port=master.port).ping()

    async def main() -> None:
        await tc.ainvalidate_tags("t")

    with pytest.raises(TagCacheUnavailable, match="replica"):
        asyncio.run(main())
    # Applied on the master, not acknowledged: the caller (or the outbox) retries it.
    assert master.client().get(entry) is None


@pytest.fixture(scope="module")
def sentinel() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master, and a sentinel watching it under a name of this module's own (django-redis keeps
    one connection pool per LOCATION: another module's pool must not be reused here)."""
    binary = find_redis_server()
    master = RedisServer.start(binary=binary)
    config = Path(tempfile.mkdtemp(prefix="tagcache-sentinel-"), "sentinel.conf")
    port = free_port()
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor {NAME} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {NAME} 5000\n"
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
def through_sentinel(settings: Any, sentinel: tuple[RedisServer, RedisServer]) -> TagCache:
    """The asyncio API on the "sentinel" alias: a master found through a real sentinel."""
    master, watcher = sentinel
    redis.Redis(port=master.port).flushdb()
    settings.CACHES = {
        **settings.CACHES,
        "sentinel": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{NAME}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [("127.0.0.1", watcher.port)],
            },
        },
    }
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": "sentinel"}
    for _ in range(50):  # the sentinel answers for the master once it has looked at it
        if redis.Redis(port=watcher.port).execute_command("SENTINEL", "MASTERS"):  # type: ignore[no-untyped-call]
            break
        time.sleep(0.1)
    return TagCache("sentinel")


def test_the_async_api_round_trip_through_sentinel(
    through_sentinel: TagCache, sentinel: tuple[RedisServer, RedisServer]
) -> None:
    tc, master = through_sentinel, sentinel[0]

    async def main() -> list[Any]:
        return [
            await tc.aset("a", 1, tags=["t"]),
            await tc.aget("a"),
            await tc.aget_or_set("b", lambda: 2, tags=["t", "u"]),
            await tc.aget_or_set("b", lambda: 3, tags=["t", "u"]),
            await tc.ainvalidate_tags("u"),
            await tc.aget("b"),
            await tc.aget("a"),
            await tc.adelete("a"),
            await tc.aget("a"),
        ]

    assert asyncio.run(main()) == [True, 1, 2, 2, 1, None, 1, True, None]
    assert master.client().exists(tc.store.keys.entry("b")) == 0  # on the master the sentinel named


def test_concurrent_cold_misses_through_sentinel_compute_once(through_sentinel: TagCache) -> None:
    tc = through_sentinel
    computed: list[int] = []

    async def main() -> list[Any]:
        release = asyncio.Event()

        async def compute() -> str:
            computed.append(1)
            await release.wait()
            return "value"

        callers = [asyncio.ensure_future(tc.aget_or_set("hot", compute, tags=["hot"])) for _ in range(50)]
        while not computed:  # the first miss is computing; the others join it or wait on its lock
            await asyncio.sleep(0)
        for _ in range(200):  # every caller has had its turns to read and miss
            await asyncio.sleep(0)
        release.set()
        return list(await asyncio.gather(*callers))

    assert asyncio.run(main()) == ["value"] * 50
    assert len(computed) == 1
    assert tc.get("hot") == "value"


def test_a_cancelled_caller_through_sentinel_leaves_no_lock(through_sentinel: TagCache) -> None:
    tc = through_sentinel
    keys = Keys("sentinel")

    async def main() -> tuple[list[str], list[str], list[Any]]:
        started = asyncio.Event()
        calls: list[int] = []

        async def compute() -> str:
            calls.append(1)
            if len(calls) == 1:
                started.set()
                await asyncio.Event().wait()  # the leader hangs until it is cancelled
            return "value"

        leader = asyncio.ensure_future(tc.aget_or_set("k", compute, tags=["t"]))
        await started.wait()
        waiters = [asyncio.ensure_future(tc.aget_or_set("k", compute, tags=["t"])) for _ in range(3)]
        locked = keys.locks()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        return locked, keys.locks(), list(await asyncio.gather(*waiters))

    locked, after_cancel, results = asyncio.run(main())
    assert len(locked) == 1
    assert after_cancel == []  # released by the cancelled caller, not left to its TTL
    assert results == ["value"] * 3
    assert keys.locks() == []


def test_the_async_api_fails_open_when_the_sentinels_master_is_down(
    settings: Any,
    failover_set: Servers,  # noqa: F811 - the fixture imported above
) -> None:
    master, _replica, _watcher = failover_set
    settings.TAGCACHE = {"CACHE": "lossy", **RESILIENCE}
    tc = TagCache("lossy")
    tc.set("k", "v", tags=["t"])
    master.process.kill()  # the sentinel still names it (down-after is a minute): refused
    master.process.wait()

    async def main() -> list[Any]:
        return [
            await tc.aget("k", "default"),
            await tc.aget_or_set("k", lambda: "computed", tags=["t"]),
            await tc.aset("k", "x", tags=["t"]),
            await tc.adelete("k"),
        ]

    assert asyncio.run(main()) == ["default", "computed", False, False]
    with pytest.raises(TagCacheUnavailable):  # an invalidation is never silently dropped
        asyncio.run(tc.ainvalidate_tags("t"))


def test_200_concurrent_agets_through_sentinel_share_at_most_four_connections(
    through_sentinel: TagCache, sentinel: tuple[RedisServer, RedisServer]
) -> None:
    tc, master = through_sentinel, sentinel[0].client()
    tc.set("k", "v", tags=["t"])

    async def main() -> tuple[list[Any], int, int]:
        await tc.aget("k")  # the loop's client exists, with one connection to the master
        pool = get_async_store("sentinel").client.connection_pool
        held = len(pool._available_connections) + len(pool._in_use_connections)
        before = len(master.client_list()) - held
        values = list(await asyncio.gather(*(tc.aget("k") for _ in range(200))))
        held = len(pool._available_connections) + len(pool._in_use_connections)
        return values, len(master.client_list()) - before, held

    values, by_server, by_pool = asyncio.run(main())
    assert values == ["v"] * 200  # none failed open
    assert by_pool <= 4
    assert by_server <= 4
