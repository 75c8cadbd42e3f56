"""Single flight inside one event loop: concurrent misses of one entry share one computation.

Across processes the recompute lock in Redis (see recompute.py) lets one caller compute while
the others poll. Inside one event loop that would still send every waiting task to Redis, so
the first task to miss an entry leads and the others await its result (or its error). A leader
that is cancelled takes nobody with it: each waiting task then runs the miss path itself (the
leader has released its Redis lock, or the lock expires within ``STAMPEDE['LOCK_TTL']``).

Waiters share the leader's value only if its write was stored, and only if they joined before
that write came back (:func:`seal` closes the flight then). The write script refuses a value
built from data read before an invalidation of its tags that completed before the write; a
waiter that joined earlier than the write started its call before any invalidation the value
could miss. Any other outcome (refused, not storable, Redis failing) sends each waiter down the
miss path on its own: a caller that began after an invalidation never gets a value that
predates it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


class _LeaderCancelled(Exception):
    """The leading task was cancelled before it had a result: waiters go on their own."""


@dataclass(eq=False)
class _Flight:
    store: Any
    entry: str
    flights: dict[str, _Flight]
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    stored: bool = False  # the leader's write was stored (set by seal)


# Per store (so per event loop and cache alias): entry key -> the leader's flight.
_flights: weakref.WeakKeyDictionary[Any, dict[str, _Flight]] = weakref.WeakKeyDictionary()
# The flight the current task leads, for seal().
_leading: ContextVar[_Flight | None] = ContextVar("django_tagcache_flight", default=None)


def seal(store: Any, entry: str, stored: bool) -> None:
    """The leader's write of ``entry`` came back: nobody joins any more, and the waiters so far
    share the value only if it was ``stored``. A no-op outside a flight (the blocking flow)."""
    flight = _leading.get()
    if flight is None or flight.store is not store or flight.entry != entry:
        return
    flight.stored = stored
    if flight.flights.get(entry) is flight:
        del flight.flights[entry]


async def join(store: Any, entry: str, run: Callable[[], Awaitable[Any]]) -> Any:
    """``await run()``, unless a task of this loop already runs it for ``entry``: then its result,
    if the leader stored it (see the module docstring); else ``await run()`` after all."""
    flights = _flights.setdefault(store, {})
    leader = flights.get(entry)
    if leader is not None:
        try:
            # A waiter's cancellation leaves the leader alone.
            result = await asyncio.shield(leader.future)
        except _LeaderCancelled:
            return await run()
        return result if leader.stored else await run()
    flight = _Flight(store, entry, flights)
    flights[entry] = flight
    token = _leading.set(flight)
    try:
        result = await run()
    except asyncio.CancelledError:
        _fail(flight.future, _LeaderCancelled())
        raise
    except BaseException as exc:
        _fail(flight.future, exc)
        raise
    else:
        flight.future.set_result(result)
        return result
    finally:
        _leading.reset(token)
        if flights.get(entry) is flight:
            del flights[entry]


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    future.set_exception(exc)
    future.exception()  # retrieved: with no waiter, asyncio must not log it as forgotten
