"""ainvalidate_tags with ``INVALIDATION_REPLICAS`` through a real Sentinel: WAIT on the loop's connection.

A master, one replica and a sentinel (the ``failover_set`` of tests/test_sentinel.py). The
replica is paused with SIGSTOP (its link stays open, it acknowledges nothing) or killed; the
order of events is read off the servers (the master lists the invalidation's connection as
blocked in WAIT), never timed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
import redis

from django_tagcache import TagCache, TagCacheUnavailable
from tests.servers import RedisServer
from tests.test_sentinel import failover_set  # noqa: F401 - the fixture

Servers = tuple[RedisServer, RedisServer, RedisServer]


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
