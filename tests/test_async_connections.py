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
from django_tagcache.caching.stores import get_async_store, get_store
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
def test_200_concurrent_agets_share_at_most_four_connections(
    alias: str, raw: redis.Redis, settings: Any
) -> None:
    # The last of 200 callers waits for 50 turns of 4 connections: on a loaded machine that can
    # take longer than the default budget, after which it would rightly fail open.
    settings.TAGCACHE = {**settings.TAGCACHE, "RETRY": {"BUDGET": 30.0}}
    tc = TagCache(alias)
    tc.set("k", "v", tags=["t"])
    values, by_server, by_pool = asyncio.run(burst(tc, raw, 200))
    assert values == ["v"] * 200  # every caller answered from Redis: none failed open
    assert metrics.snapshot()["hits"] == 201
    assert by_pool <= 4
    assert by_server <= 4


def pool_of(alias: str) -> Any:
    return get_async_store(alias).client.connection_pool


async def hold_all(alias: str) -> list[asyncio.Task[Any]]:
    """Tasks each holding one of the loop's connections in a BLPOP that never returns by itself."""
    client = get_async_store(alias).client
    pool = pool_of(alias)
    holders = [
        asyncio.ensure_future(client.blpop([f"nothing-{n}"], timeout=0)) for n in range(pool.max_connections)
    ]
    while len(pool._in_use_connections) < pool.max_connections:
        await asyncio.sleep(0)
    return holders


async def cancelled(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_a_waiter_cancelled_as_a_connection_reaches_it_passes_the_connection_on() -> None:
    tc, raw = TagCache("default"), get_store("default").client
    tc.set("k", "v", tags=["t"])

    async def main() -> tuple[list[Any], tuple[int, int], int]:
        await tc.aget("k")
        pool = pool_of("default")
        held = [await pool.get_connection() for _ in range(pool.max_connections)]
        first = asyncio.ensure_future(tc.aget("k"))
        second = asyncio.ensure_future(tc.aget("k"))
        left = asyncio.ensure_future(tc.aget("k"))
        while len(pool._waiters) < 3:
            await asyncio.sleep(0)
        left.cancel()  # cancelled while in line, nothing in hand
        await pool.release(held.pop())  # handed to ``first``, which has not run yet ...
        first.cancel()  # ... and leaves with it: ``second`` must get it
        values = [await second]
        for task in (first, left):
            with pytest.raises(asyncio.CancelledError):
                await task
        for connection in held:
            await pool.release(connection)
        counts = (len(pool._in_use_connections), len(pool._available_connections))
        _values, by_server, _by_pool = await burst(tc, raw, 200)
        return values + _values, counts, by_server

    values, (in_use, free), by_server = asyncio.run(main())
    assert values == ["v"] * 201
    assert (in_use, free) == (0, 4)  # every connection is back
    assert by_server <= 4


def test_tasks_cancelled_while_holding_connections_give_them_back() -> None:
    tc, raw = TagCache("default"), get_store("default").client
    tc.set("k", "v", tags=["t"])

    async def main() -> tuple[list[Any], tuple[int, int], int]:
        await tc.aget("k")
        pool = pool_of("default")
        holders = await hold_all("default")
        waiting = [asyncio.ensure_future(tc.aget("k")) for _ in range(10)]
        while len(pool._waiters) < 10:
            await asyncio.sleep(0)
        await cancelled(holders)  # cancelled mid-command: their connections go to the waiters
        values = list(await asyncio.gather(*waiting))
        counts = (len(pool._in_use_connections), len(pool._available_connections))
        more, by_server, _by_pool = await burst(tc, raw, 200)
        return values + more, counts, by_server

    values, (in_use, free), by_server = asyncio.run(main())
    assert values == ["v"] * 210
    assert in_use == 0
    assert free <= 4
    assert by_server <= 4


def test_connections_busy_for_the_whole_budget_fail_open_without_tripping_the_breaker(settings: Any) -> None:
    settings.TAGCACHE = {"RETRY": {"BUDGET": 0.2}, "CIRCUIT_BREAKER": {"FAILURES": 1, "RESET_TIMEOUT": 60}}
    tc = TagCache("default")
    tc.set("k", "v", tags=["t"])

    async def main() -> tuple[Any, str, Any]:
        await tc.aget("k")
        holders = await hold_all("default")
        try:
            busy = await tc.aget("k", "default")  # waits 0.2 s for a connection, then fails open
            breaker = get_async_store("default").breaker
            assert breaker is not None
            state = breaker.state
        finally:
            await cancelled(holders)
        return busy, state, await tc.aget("k")

    busy, state, after = asyncio.run(main())
    assert busy == "default"
    assert state == "closed"  # Redis itself answered every call: the breaker counted nothing
    assert after == "v"
