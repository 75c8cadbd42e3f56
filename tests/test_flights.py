"""Single flight in one event loop must not hand waiters a value whose write was refused as stale.

A waiter that joins a leader's computation after an invalidation of the entry's tags returned
gets the leader's result, built from data read before that invalidation: the write script
refused to store it, yet it is served to a caller that started after the invalidation.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from django_tagcache import TagCache
from django_tagcache.caching import flights
from django_tagcache.core import metrics


def test_a_waiter_joining_after_an_invalidation_never_gets_the_refused_value(
    alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tc = TagCache(alias)
    source = {"v": "old"}
    original = flights.join

    async def main() -> tuple[Any, Any]:
        computing, go, joined = asyncio.Event(), asyncio.Event(), asyncio.Event()
        calls = 0

        async def join(store: Any, entry: str, run: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                joined.set()  # the waiter enters join: it awaits the leader before main resumes
            return await original(store, entry, run)

        monkeypatch.setattr(flights, "join", join)

        async def leader_compute() -> str:
            seen = source["v"]  # the leader reads its data ...
            computing.set()
            await go.wait()  # ... and is slow to finish
            return seen

        async def waiter_compute() -> str:
            return source["v"]

        leader = asyncio.ensure_future(tc.aget_or_set("k", leader_compute, tags=["t"]))
        await computing.wait()
        source["v"] = "new"  # the source of truth changes ...
        await tc.ainvalidate_tags("t")  # ... and its invalidation has returned
        waiter = asyncio.ensure_future(tc.aget_or_set("k", waiter_compute, tags=["t"]))
        await joined.wait()
        go.set()
        return await leader, await waiter

    refused = metrics.snapshot()["refused_writes"]
    leader_value, waiter_value = asyncio.run(main())
    assert leader_value == "old"  # the leader's own business: its data predates the invalidation
    assert metrics.snapshot()["refused_writes"] == refused + 1  # its write was refused as stale
    assert tc.get("k") in (None, "new")  # never the refused value
    # Expected "new" (the waiter's call began after the invalidation). Observed: "old".
    assert waiter_value == "new"
