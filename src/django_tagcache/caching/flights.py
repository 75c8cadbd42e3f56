"""Single flight inside one event loop: concurrent misses of one entry share one computation.

Across processes the recompute lock in Redis (see recompute.py) lets one caller compute while
the others poll. Inside one event loop that would still send every waiting task to Redis, so
the first task to miss an entry leads and the others await its result (or its error). A leader
that is cancelled takes nobody with it: each waiting task then runs the miss path itself (the
leader has released its Redis lock, or the lock expires within ``STAMPEDE['LOCK_TTL']``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any


class _LeaderCancelled(Exception):
    """The leading task was cancelled before it had a result: waiters go on their own."""


# Per store (so per event loop and cache alias): entry key -> the leader's future.
_flights: weakref.WeakKeyDictionary[Any, dict[str, asyncio.Future[Any]]] = weakref.WeakKeyDictionary()


async def join(store: Any, entry: str, run: Callable[[], Awaitable[Any]]) -> Any:
    """``await run()``, unless a task of this loop already runs it for ``entry``: then its result."""
    flights = _flights.setdefault(store, {})
    leader = flights.get(entry)
    if leader is not None:
        try:
            return await asyncio.shield(leader)  # a waiter's cancellation leaves the leader alone
        except _LeaderCancelled:
            return await run()
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    flights[entry] = future
    try:
        result = await run()
    except asyncio.CancelledError:
        _fail(future, _LeaderCancelled())
        raise
    except BaseException as exc:
        _fail(future, exc)
        raise
    else:
        future.set_result(result)
        return result
    finally:
        if flights.get(entry) is future:
            del flights[entry]


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    future.set_exception(exc)
    future.exception()  # retrieved: with no waiter, asyncio must not log it as forgotten
