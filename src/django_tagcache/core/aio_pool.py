"""A ``redis.asyncio`` connection pool with a fixed number of connections, where a task waits its turn.

An event loop serving 200 concurrent requests would otherwise open 200 connections (or fail
past redis-py's cap). Here at most ``max_connections`` are open; a task that finds none free
waits, in arrival order, for one to be handed back, up to ``wait_timeout`` seconds, and then
raises :class:`ConnectionsBusy`.

Not redis-py's ``BlockingConnectionPool``: it wakes a waiter through an ``asyncio.Condition``,
and on Python before 3.13 a waiter cancelled after being woken swallows the wake-up, so another
waiter times out while a connection sits idle. Here a connection given back is handed to the
next waiter directly, and a waiter that leaves with one in hand (cancelled, timed out) hands it
on, without awaiting anything: a connection is never lost, whatever is cancelled when. No Django.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import redis.asyncio
import redis.asyncio.sentinel
from redis.exceptions import TimeoutError as RedisTimeoutError


class ConnectionsBusy(RedisTimeoutError):
    """Every connection of the event loop's pool stayed in use for the whole wait.

    A timeout, so a read fails open and an invalidation is reported (or kept in the outbox);
    but it says nothing of Redis' health, so the circuit breaker does not count it and it is
    not retried (the wait used the time a retry would need)."""


class BoundedPool(redis.asyncio.ConnectionPool):
    """At most ``max_connections`` connections; a caller finding none free waits up to ``wait_timeout``."""

    def __init__(self, *args: Any, wait_timeout: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wait_timeout = wait_timeout
        self._waiters: deque[asyncio.Future[Any]] = deque()

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        """A connected connection: a free one, a new one under the cap, or the next one handed back."""
        if not self._waiters and (
            self._available_connections or len(self._in_use_connections) < self.max_connections
        ):
            # The parent takes it without waiting (nothing is awaited before it is marked in use).
            return await super().get_connection(*args, **options)  # type: ignore[no-untyped-call]
        connection = await self._wait()
        try:
            await self.ensure_connection(connection)
        except BaseException:
            self._give_back(connection)
            raise
        return connection

    async def _wait(self) -> Any:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(self.wait_timeout, self._expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # cancelled just as one came: pass it on
            raise
        finally:
            timer.cancel()
            if not waiter.done() or waiter.cancelled():
                self._forget(waiter)

    def _expire(self, waiter: asyncio.Future[Any]) -> None:
        if waiter.done():
            return
        self._forget(waiter)
        waiter.set_exception(
            ConnectionsBusy(
                f"All {self.max_connections} Redis connections of this event loop stayed busy for "
                f"{self.wait_timeout:g} s; see TAGCACHE['ASYNC_MAX_CONNECTIONS']"
            )
        )

    def _forget(self, waiter: asyncio.Future[Any]) -> None:
        with contextlib.suppress(ValueError):  # already taken off by the release that answered it
            self._waiters.remove(waiter)

    def _give_back(self, connection: Any) -> None:
        """Hand ``connection`` to the next waiter, or put it back among the free ones. Never awaits."""
        if self._hand_on(connection):
            return
        self._in_use_connections.discard(connection)
        self._available_connections.append(connection)

    def _hand_on(self, connection: Any) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)  # still in use: by the waiter now
                return True
        return False

    async def release(self, connection: Any) -> None:
        """Give ``connection`` back: to the first task waiting for one, else to the pool."""
        if self._waiters and self._hand_on(connection):
            return
        await super().release(connection)


class BoundedSentinelPool(BoundedPool, redis.asyncio.sentinel.SentinelConnectionPool):
    """:class:`BoundedPool` for the master (or a replica) a Sentinel names."""
