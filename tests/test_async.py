"""The asyncio API on its own ground: round trips, single flight in one loop, cancellation, loops.

The behaviour the blocking API shares (hits, misses, invalidation, refused stale writes, faults)
is tested for both faces in test_api.py, test_race.py, test_faults.py and test_sentinel.py
through tests/aio.py; what only an event loop has is tested here, once per backend.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

import pytest
import redis

from django_tagcache import TagCache, TagCacheUnavailable, ainvalidate_tags, cached, tagcache
from django_tagcache.caching import flights
from django_tagcache.caching.stores import get_async_store
from django_tagcache.core import metrics
from tests import counting
from tests.keyspace import Keys


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_hit_is_one_get(alias: str, tc: TagCache) -> None:
    if alias == "locmem":
        pytest.skip("counts Redis round trips; the in-process store sends none")
    tc.set("k", "v", tags=["t"])

    async def hit() -> tuple[Any, counting.Tally]:
        await tc.aget("warm the loop's connection")
        with counting.count() as tally:
            value = await tc.aget("k")
        return value, tally

    value, tally = run(hit())
    assert value == "v"
    assert (tally.round_trips, tally.commands) == (1, ["GET"])


def test_async_writes_are_read_by_the_blocking_api(tc: TagCache) -> None:
    async def write() -> None:
        assert await tc.aset("k", {"a": 1}, tags=["t"])
        assert await tc.aget_or_set("k2", lambda: "computed", tags=["t"]) == "computed"

    run(write())
    assert tc.get("k") == {"a": 1}
    assert tc.get("k2") == "computed"
    assert run(tc.ainvalidate_tags("t")) == 2
    assert tc.get("k") is None


def stampede(tc: TagCache, callers: int) -> tuple[int, list[Any]]:
    """``callers`` tasks of one loop miss one cold key at once; (computations, results)."""
    computed = []
    misses = metrics.snapshot()["misses"]

    async def compute() -> str:
        computed.append(1)
        # Until every task has read and missed (and so joined the flight): a sleep of a fixed
        # length would not be long enough on a loaded machine.
        deadline = time.monotonic() + 30
        while metrics.snapshot()["misses"] - misses < callers and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        return "value"

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(
                *(tc.aget_or_set("hot", compute, timeout=60, tags=["hot"]) for _ in range(callers))
            )
        )

    results = run(main())
    return len(computed), results


def test_a_hundred_concurrent_cold_misses_compute_once(alias: str, tc: TagCache, settings: Any) -> None:
    # No Redis lock: the one computation is the event loop's single flight alone.
    settings.TAGCACHE = {**settings.TAGCACHE, "STAMPEDE": {"LOCK_TTL": 0}}
    tc = TagCache(alias)
    computations, results = stampede(tc, 100)
    assert (computations, results) == (1, ["value"] * 100)
    assert tc.get("hot") == "value"


def test_without_the_loops_single_flight_every_task_computes(
    alias: str, tc: TagCache, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: the same stampede, with the single flight of flights.py switched off."""
    settings.TAGCACHE = {**settings.TAGCACHE, "STAMPEDE": {"LOCK_TTL": 0}}

    async def alone(store: Any, entry: str, miss: Any) -> Any:
        return await miss()

    monkeypatch.setattr(flights, "join", alone)
    computations, _results = stampede(TagCache(alias), 100)
    assert computations > 1


def test_the_loops_single_flight_sends_one_miss_script(alias: str, tc: TagCache) -> None:
    if alias == "locmem":
        pytest.skip("counts Redis round trips; the in-process store sends none")

    async def main() -> counting.Tally:
        await tc.aget_or_set("warm", 1, tags=["warm"])  # the script mode, the scripts
        await asyncio.gather(*(tc.aget("warm") for _ in range(100)))  # 100 open connections

        async def compute() -> str:
            await asyncio.sleep(0.2)  # every task has read and missed by then
            return "value"

        with counting.count() as tally:
            await asyncio.gather(*(tc.aget_or_set("hot", compute, tags=["hot"]) for _ in range(100)))
        return tally

    tally = run(main())
    scripts = [c for c in tally.commands if c in ("FCALL", "EVALSHA", "EVAL")]
    # One miss script and one write (a cluster writes in steps: more, but not one per task).
    assert tally.commands.count("GET") >= 100
    assert len(scripts) <= (2 if alias != "cluster" else 6)


def test_a_cancelled_waiter_leaves_the_computation_alone(tc: TagCache, keys: Keys) -> None:
    async def main() -> Any:
        go = asyncio.Event()
        computed = []

        async def compute() -> str:
            computed.append(1)
            await go.wait()
            return "value"

        leader = asyncio.ensure_future(tc.aget_or_set("k", compute, tags=["t"]))
        while not computed:  # the leader computes (a fixed sleep may end before it does)
            await asyncio.sleep(0.001)
        waiter = asyncio.ensure_future(tc.aget_or_set("k", compute, tags=["t"]))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        go.set()
        return await leader, computed

    value, computed = run(main())
    assert (value, len(computed)) == ("value", 1)
    assert tc.get("k") == "value"
    assert keys.locks() == []


def test_a_cancelled_leader_releases_its_lock_and_the_waiters_go_on(tc: TagCache, keys: Keys) -> None:
    async def main() -> Any:
        started = asyncio.Event()
        calls = []

        async def compute() -> str:
            calls.append(1)
            if len(calls) == 1:
                started.set()
                await asyncio.Event().wait()  # the leader hangs until it is cancelled
            return "value"

        leader = asyncio.ensure_future(tc.aget_or_set("k", compute, tags=["t"]))
        await started.wait()
        waiters = [asyncio.ensure_future(tc.aget_or_set("k", compute, tags=["t"])) for _ in range(5)]
        await asyncio.sleep(0.01)
        locks_while_computing = keys.locks()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        locks_after_cancel = keys.locks()
        return locks_while_computing, locks_after_cancel, await asyncio.gather(*waiters), calls

    while_computing, after_cancel, results, calls = run(main())
    assert len(while_computing) == 1
    assert after_cancel == []  # released by the cancelled leader, not left to expire
    assert results == ["value"] * 5  # nobody is stuck, nobody sees the leader's cancellation
    assert 2 <= len(calls) <= 6
    assert tc.get("k") == "value"
    assert keys.locks() == []


def test_each_event_loop_gets_working_connections(alias: str, tc: TagCache, raw: redis.Redis) -> None:
    """asyncio.run() after asyncio.run(): a new loop gets its own pool; an ended loop's is closed."""
    stores = []

    async def once(i: int) -> None:
        store = get_async_store(alias)
        stores.append(store)
        assert await tc.aset(f"k{i}", i, tags=["t"])
        assert await tc.aget(f"k{i}") == i

    def clients() -> int:
        return int(raw.info("clients")["connected_clients"])

    run(once(0))
    before = clients()
    for i in range(1, 6):
        run(once(i))
    assert all(store.client is not stores[0].client for store in stores[1:])
    assert clients() <= before + 1  # every ended loop closed its connections
    assert run(tc.ainvalidate_tags("t")) == 6


def test_async_cached_function_is_a_coroutine_function(tc: TagCache) -> None:
    calls = []

    @cached(timeout=60, tags=lambda n: [f"n:{n}"], cache=tc._alias)
    async def square(n: int) -> int:
        calls.append(n)
        await asyncio.sleep(0)
        return n * n

    assert inspect.iscoroutinefunction(square)

    async def main() -> list[int]:
        first = [await square(3), await square(3), await square(4)]
        await TagCache(tc._alias).ainvalidate_tags("n:3")
        return [*first, await square(3)]

    assert run(main()) == [9, 9, 16, 9]
    assert calls == [3, 4, 3]
    assert run(square.aforget(4)) is True


def test_async_cached_refuses_a_stale_write(tc: TagCache) -> None:
    price = {"v": 10}

    @cached(timeout=60, tags=["product:1"], cache=tc._alias)
    async def current_price() -> int:
        seen = price["v"]
        price["v"] = 12
        await TagCache(tc._alias).ainvalidate_tags("product:1")  # a writer commits meanwhile
        return seen

    assert run(current_price()) == 10  # the caller gets what it computed...
    assert metrics.snapshot()["refused_writes"] == 1  # ...but it was not stored
    assert tc.get(current_price.cache_key()) is None


def test_module_level_async_invalidation(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": "locmem"}
    tagcache.set("k", 1, tags=["t"])
    assert run(ainvalidate_tags("t")) == 1
    assert tagcache.get("k") is None


@pytest.mark.django_db(transaction=True)
def test_a_purge_of_every_namespace_runs_on_the_loop(alias: str, settings: Any) -> None:
    """The namespace scan and each namespace's invalidation are awaited on the loop's own
    connection: no thread, and not one command through the blocking client."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    from django_tagcache.models import PurgeRecord
    from tests.tenancy import current_tenant

    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias, "NAMESPACE": "tests.tenancy.tenant"}
    tc = TagCache(alias)
    for name in ("acme", "globex", None):
        token = current_tenant.set(name)
        tc.set("menu", name, tags=["menu"])
        tc.set("other", name, tags=["other"])
        current_tenant.reset(token)

    async def purge() -> tuple[int, counting.Tally]:
        try:
            await tc.aget("warm the loop's connection")
            with counting.count() as tally:
                removed = await tc.ainvalidate_tags("menu", all_namespaces=True, source="ops:alice")
            return removed, tally
        finally:
            await sync_to_async(connections.close_all)()  # the audit's thread

    removed, tally = run(purge())
    assert removed == 3
    for name in ("acme", "globex", None):
        token = current_tenant.set(name)
        assert (tc.get("menu"), tc.get("other")) == (None, name)
        current_tenant.reset(token)
    assert PurgeRecord.objects.filter(source="ops:alice").count() == 3  # one per namespace
    if alias != "locmem":
        assert "SCAN" in tally.commands  # on the loop's thread, through its connection
        assert tally.blocking == []


@pytest.mark.cluster
def test_the_async_api_fails_open_on_a_cluster_that_died(settings: Any) -> None:
    """A cluster of the test's own, used on the loop, then every node killed: reads and writes
    fail open, an invalidation raises; and a cluster never reached at all behaves the same."""
    from tests.cluster import start_cluster
    from tests.servers import free_port
    from tests.test_cluster_client import use

    async def down() -> list[Any]:
        results: list[Any] = [
            await tagcache.aget("k", "default"),
            await tagcache.aget_or_set("k", lambda: "computed", tags=["t"]),
            await tagcache.aset("k", 1, tags=["t"]),
            await tagcache.adelete("k"),
        ]
        with pytest.raises(TagCacheUnavailable):  # an invalidation is never silently dropped
            await tagcache.ainvalidate_tags("t")
        return results

    settings.TAGCACHE = {"CACHE": "gone", "RETRY": {"ATTEMPTS": 1}}
    cluster = start_cluster(shards=3)
    try:
        use(settings, cluster.location, ignore=False)

        async def used_then_killed() -> list[Any]:
            assert await tagcache.aset("k", "v", tags=["t"])
            assert await tagcache.aget("k") == "v"
            for server in cluster.servers:
                server.kill()
            return await down()

        assert run(used_then_killed()) == ["default", "computed", False, False]
    finally:
        cluster.stop()
    use(settings, f"redis://127.0.0.1:{free_port()}", ignore=False)
    assert run(down()) == ["default", "computed", False, False]
