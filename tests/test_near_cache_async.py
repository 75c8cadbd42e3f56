"""The near cache (L1) on the asyncio API: ``aget``, ``aget_or_set``, async ``@cached`` and
``ainvalidate_tags`` follow the rules of the blocking calls, on a real Redis.

The rules themselves (tickets, epochs, serving only while confirmed) live in
django_tagcache/core/nearcache.py and are tested in test_near_cache.py; here: that the asyncio
path goes through them, and that its own invalidation is confirmed without blocking the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis

from django_tagcache import TagCache, ainvalidate_tags, cached, tagcache
from django_tagcache.caching import near
from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics
from tests.counting import count
from tests.test_near_cache import NEAR, STALENESS, _url, wait_serving

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def l1(settings: Any) -> Iterator[near.Near]:
    settings.TAGCACHE = {**settings.TAGCACHE, "NEAR_CACHE": NEAR, "STALENESS": STALENESS}
    found = near.near_for("default", get_store("default"))
    assert found is not None
    assert found.channels[0].connected.wait(5)
    wait_serving(found)
    yield found
    near.reset()


async def awarm(found: near.Near, key: str, read: Any) -> None:
    """Read (awaiting ``read()``) until L1 holds the entry: a read is voided when the push of this
    process's own earlier write arrives while it is in flight."""
    entry = get_store().keys.entry(key)
    for _ in range(50):
        await read()
        if found.cache.get(entry) is not None:
            return
        await found.abarrier()
    raise AssertionError(f"{key!r} never reached L1")


def test_aget_or_set_is_served_from_l1_without_a_round_trip(l1: near.Near) -> None:
    async def scenario() -> None:
        await awarm(l1, "k", lambda: tagcache.aget_or_set("k", lambda: "v", tags=["warm:1"]))
        with count() as tally:
            assert await tagcache.aget_or_set("k", lambda: "x", tags=["warm:1"]) == "v"
        assert tally.round_trips == 0

    run(scenario())
    assert metrics.snapshot()["near_hits"] >= 1


def test_aget_fills_l1_and_is_served_from_it(l1: near.Near, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": {**STALENESS, "DEFAULT": "important"}}
    found = near.near_for("default", get_store("default"))
    assert found is not None
    wait_serving(found)

    async def scenario() -> None:
        await tagcache.aset("k", "v")
        await awarm(found, "k", lambda: tagcache.aget("k"))
        with count() as tally:
            assert await tagcache.aget("k") == "v"
            assert await tagcache.aget("k", near=False) == "v"
        assert tally.round_trips == 1  # the near=False one only

    run(scenario())


def test_the_sync_and_async_calls_share_one_l1(l1: near.Near) -> None:
    """A value kept by a blocking read serves the asyncio one, and the other way round."""
    tagcache.get_or_set("sync", lambda: "s", tags=["warm:1"])

    async def scenario() -> None:
        await awarm(l1, "sync", lambda: tagcache.aget_or_set("sync", lambda: "x", tags=["warm:1"]))
        await awarm(l1, "async", lambda: tagcache.aget_or_set("async", lambda: "a", tags=["warm:1"]))

    run(scenario())
    with count() as tally:
        assert tagcache.get_or_set("async", lambda: "x", tags=["warm:1"]) == "a"
        assert tagcache.get_or_set("sync", lambda: "x", tags=["warm:1"]) == "s"
    assert tally.round_trips == 0


def test_critical_data_bypasses_it(l1: near.Near) -> None:
    async def scenario() -> None:
        await tagcache.aget_or_set("k", lambda: "v", tags=["cold:1"])
        for _ in range(3):
            with count() as tally:
                assert await tagcache.aget_or_set("k", lambda: "x", tags=["cold:1"]) == "v"
            assert tally.round_trips == 1
        await tagcache.aset("plain", "v")  # aget knows no tags: the DEFAULT class, critical here
        for _ in range(3):
            with count() as tally:
                assert await tagcache.aget("plain") == "v"
            assert tally.round_trips == 1

    run(scenario())
    assert metrics.snapshot()["near_hits"] == 0
    assert l1.cache.size()[0] == 0


def test_near_false_per_call_and_per_async_function(l1: near.Near) -> None:
    calls: list[int] = []

    @cached(tags=lambda n: [f"warm:{n}"], near=False)
    async def compute(n: int) -> int:
        calls.append(n)
        return n

    @cached(tags=lambda n: [f"warm:{n}"])
    async def near_compute(n: int) -> int:
        calls.append(-n)
        return n

    async def scenario() -> None:
        for _ in range(3):
            await compute(1)
            await tagcache.aget_or_set("plain", lambda: 1, tags=["warm:1"], near=False)
        with count() as tally:
            await compute(1)
            await tagcache.aget_or_set("plain", lambda: 1, tags=["warm:1"], near=False)
        assert tally.round_trips == 2  # one GET each: neither was kept in L1
        await awarm(l1, near_compute.cache_key(2), lambda: near_compute(2))
        with count() as tally:
            assert await near_compute(2) == 2
        assert tally.round_trips == 0

    run(scenario())
    assert calls == [1, -2]


def test_a_read_inside_an_async_compute_never_uses_l1(l1: near.Near) -> None:
    """Rule 7: what a compute reads may end up inside another entry, so it is read from Redis."""

    async def scenario() -> None:
        await awarm(l1, "inner", lambda: tagcache.aget_or_set("inner", lambda: "i", tags=["warm:1"]))

        async def outer() -> str:
            with count() as tally:
                inner = await tagcache.aget_or_set("inner", lambda: "x", tags=["warm:1"])
            assert tally.round_trips == 1  # held in L1, and still read from Redis
            return f"outer({inner})"

        assert await tagcache.aget_or_set("outer", outer, tags=["warm:2"]) == "outer(i)"

    run(scenario())


def test_ainvalidate_drops_this_processes_copy_before_it_returns(l1: near.Near) -> None:
    entry = get_store().keys.entry("k")

    async def scenario() -> None:
        await awarm(l1, "k", lambda: tagcache.aget_or_set("k", lambda: "v1", tags=["warm:1"]))
        await ainvalidate_tags("warm:1")
        assert l1.cache.get(entry) is None
        assert await tagcache.aget_or_set("k", lambda: "v2", tags=["warm:1"]) == "v2"

    run(scenario())


def test_ainvalidate_awaits_the_confirmation_without_blocking_the_loop(l1: near.Near) -> None:
    """The reply to the barrier is held back by the reader thread until the loop has run another
    task: a barrier that blocked the loop's thread would never let that task run before it
    returned (and, past REPLY_TIMEOUT, would flush L1 instead of confirming)."""
    channel = l1.channels[0]
    gate = threading.Event()
    real = channel._on_reply

    def held(reply: Any) -> None:
        with channel._lock:
            waiting = bool(channel._in_flight) and channel._in_flight[0].kind == "barrier"
        if waiting:
            assert gate.wait(5)
        real(reply)

    entry = get_store().keys.entry("k")

    async def scenario() -> None:
        await awarm(l1, "k", lambda: tagcache.aget_or_set("k", lambda: "v", tags=["warm:1"]))
        flushes = metrics.snapshot()["near_flushes"]
        channel._on_reply = held  # type: ignore[method-assign]
        try:
            task = asyncio.ensure_future(ainvalidate_tags("warm:1"))
            for _ in range(10_000):  # each turn yields the loop to the invalidation
                await asyncio.sleep(0)
                if any(sent.kind == "barrier" for sent in list(channel._in_flight)):
                    break
            else:
                raise AssertionError("the barrier was never sent")
            # This task runs while the invalidation still waits for its reply, which has neither
            # come nor been given up on (a barrier that blocked the loop until REPLY_TIMEOUT
            # would have flushed L1 before this task ran again).
            assert not task.done()
            assert metrics.snapshot()["near_flushes"] == flushes
            gate.set()
            assert await task == 1
        finally:
            gate.set()
            channel._on_reply = real  # type: ignore[method-assign]
        assert l1.cache.get(entry) is None
        assert metrics.snapshot()["near_flushes"] == flushes  # confirmed, not given up on

    run(scenario())


def test_an_overwrite_by_another_client_leaves_l1_for_async_readers(l1: near.Near) -> None:
    entry = get_store().keys.entry("k")

    async def scenario() -> None:
        await awarm(l1, "k", lambda: tagcache.aget_or_set("k", lambda: "v1", tags=["warm:1"]))
        with redis.Redis.from_url(_url()) as other:
            other.delete(entry)
        await l1.abarrier()  # every push queued before now is applied
        with count() as tally:
            assert await tagcache.aget_or_set("k", lambda: "v2", tags=["warm:1"]) == "v2"
        assert tally.round_trips >= 1

    run(scenario())


def test_a_cancelled_read_leaves_no_ticket_behind(l1: near.Near) -> None:
    """A read cancelled while its GET is in flight takes its ticket back (nothing leaks, and a
    later read of the key is kept as usual)."""
    entry = get_store().keys.entry("k")
    tagcache.get_or_set("k", lambda: "v", tags=["warm:1"])

    async def scenario() -> None:
        task = asyncio.ensure_future(tagcache.aget_or_set("k", lambda: "x", tags=["warm:1"]))
        for _ in range(10_000):
            await asyncio.sleep(0)
            if entry in l1.cache._reading:  # the ticket is taken, the GET sent
                break
        else:
            pytest.skip("the read finished before it could be cancelled")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert entry not in l1.cache._reading
        await awarm(l1, "k", lambda: tagcache.aget_or_set("k", lambda: "x", tags=["warm:1"]))

    run(scenario())


def test_another_alias_without_l1_reads_redis(l1: near.Near) -> None:
    other = TagCache("builtin")

    async def scenario() -> None:
        await other.aset("k", "b", tags=["warm:1"])
        for _ in range(2):
            with count() as tally:
                assert await other.aget_or_set("k", lambda: "x", tags=["warm:1"]) == "b"
            assert tally.round_trips == 1

    run(scenario())
