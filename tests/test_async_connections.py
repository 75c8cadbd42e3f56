"""How many Redis connections an event loop opens: ``TAGCACHE['ASYNC_MAX_CONNECTIONS']``.

Connections are counted twice: by the server (CLIENT LIST, against a count taken in the same
loop before the burst) and by the asyncio client's pool itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from django_tagcache import TagCache
from django_tagcache.caching.stores import get_async_store
from django_tagcache.core import metrics

#: The backends whose asyncio client is one pool on one server (the cluster's is one per node).
STANDALONE = ["default", "builtin"]


def server_connections(raw: redis.Redis) -> int:
    return len(raw.client_list())


def pool_connections(tc: TagCache) -> int:
    pool = get_async_store(tc.alias).client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def burst(tc: TagCache, raw: redis.Redis, callers: int) -> tuple[list[Any], int, int]:
    """``callers`` concurrent agets of a cached key on the running loop: (values, connections the
    loop holds by the server's count, by its pool's)."""
    await tc.aget("k")  # the loop's client exists, with one connection
    before = server_connections(raw) - pool_connections(tc)
    values = list(await asyncio.gather(*(tc.aget("k") for _ in range(callers))))
    return values, server_connections(raw) - before, pool_connections(tc)


@pytest.mark.parametrize("alias", STANDALONE)
def test_200_concurrent_agets_share_at_most_four_connections(alias: str, raw: redis.Redis) -> None:
    tc = TagCache(alias)
    tc.set("k", "v", tags=["t"])
    values, by_server, by_pool = asyncio.run(burst(tc, raw, 200))
    assert values == ["v"] * 200  # every caller answered from Redis: none failed open
    assert metrics.snapshot()["hits"] == 201
    assert by_pool <= 4
    assert by_server <= 4
