"""What one ``aget`` hit costs in Python function calls, counted, not timed.

Counted with ``sys.setprofile``: every function call whose code is this package's, once per
call (a coroutine resumed after a suspension is the same call, not a new one), in one warm
``aget`` hit; the raw ``redis.asyncio`` GET of the same entry, through the same client, is
counted in the same test, so that the figures say what the package adds to the GET.
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from django_tagcache import tagcache
from django_tagcache.caching.stores import get_async_store
from django_tagcache.core import telemetry

PACKAGE = str(Path(sys.modules["django_tagcache"].__file__ or "").parent)


#: The event loop's own machinery: how often it turns between send and reply is not the call's work.
LOOP = (str(Path(asyncio.__file__).parent), str(Path(selectors.__file__)))


async def calls_of(func: Callable[[], Awaitable[Any]]) -> tuple[list[str], int]:
    """(this package's calls, every call but the event loop's: Python functions and builtins)
    of one ``await func()``."""
    frames: dict[int, Any] = {}  # kept alive, so that no two calls share an id
    ours: list[str] = []
    builtins = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal builtins
        filename = frame.f_code.co_filename
        if filename.startswith(LOOP):
            return
        if event == "c_call":
            builtins += 1
        elif event == "call" and id(frame) not in frames:
            frames[id(frame)] = frame
            if filename.startswith(PACKAGE):
                ours.append(f"{filename[len(PACKAGE) + 1 :]}:{frame.f_code.co_name}")

    sys.setprofile(profile)
    try:
        await func()
    finally:
        sys.setprofile(None)
    return ours, len(frames) + builtins - 2  # not the awaited lambda, nor setprofile(None)


def test_an_aget_hit_makes_few_calls_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """39 calls of the package's own (and 68 calls more than the raw GET) before the hit path
    was trimmed: settings read per call, the breaker asked twice, the budget made and checked,
    the retry's context manager, the request cache asked twice, inspect's checks, unpickling
    through a helper; 17 (and 29 more) after. 11 (and 23 more) since the hit awaits the guarded
    GET from ``aget`` itself (the full read steps nested four coroutines more), the guard makes
    the first attempt itself, the tracing check reads no environment, a hit is counted and timed
    under one lock, and an alias without a near cache is told by a dict lookup. Then the GET
    itself sent on a connection of the pool rather than through redis-py's command dispatch and
    its telemetry: 13 of the package's own (it now makes the exchange), 30 fewer than the raw GET."""
    # Whatever an earlier test left behind in the process does not count here: a tracer provider
    # (one per process, set by the metrics tests) would add a span's calls.
    monkeypatch.setattr(telemetry, "tracing", lambda: False)

    async def main() -> tuple[list[str], int, int]:
        await tagcache.aset("card", {"name": "Blue mug", "stock": list(range(20))}, tags=["category:7"])
        store = get_async_store()
        entry = store.keys.entry("card")
        for _ in range(3):  # everything lazy on both paths is built
            assert await tagcache.aget("card") is not None
            assert await store.client.get(entry) is not None
        ours, total = await calls_of(lambda: tagcache.aget("card"))
        _, raw = await calls_of(lambda: store.client.get(entry))
        return ours, total, raw

    # A fresh context: no request cache, unit budget or namespace another test left open.
    ours, total, raw = contextvars.Context().run(asyncio.run, main())
    print(f"aget hit: {len(ours)} calls of django_tagcache, {total} calls in all; raw GET: {raw}")
    assert len(ours) <= 13, "\n".join(ours)
    assert total <= raw - 30, "\n".join(ours)
