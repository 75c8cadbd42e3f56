"""The steps of a tagged-entry store, written once for the blocking and the asyncio transport.

Each step plans its script calls with :mod:`.protocol`, sends them through ``self._io`` (one Redis
call under the time budget, the circuit breaker and the retry policy) and reads the replies.
:class:`~.store.TagStore` runs the steps on a blocking redis-py client,
:class:`~.aio_store.AsyncTagStore` on ``redis.asyncio``; see :mod:`.bridge` for how one body
serves both. No Django in here.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from . import completions, replication
from .aio_pool import ConnectionsBusy
from .bridge import settle
from .events import EventOptions, event_args
from .keys import KeyScheme, MakeKey
from .protocol import (
    Miss,
    StoreOptions,
    completions_of,
    new_token,
    parse_invalidate,
    parse_miss,
    plan_generations,
    plan_invalidate,
    plan_miss,
    plan_write,
    text,
)
from .retry import RETRYABLE, retried
from .timebudget import Budget, check_budget, client_attempt_timeout, unit_budget

if TYPE_CHECKING:
    from .breaker import CircuitBreaker


class TagSteps:
    """What a store does, independent of how it talks to Redis (see the module docstring)."""

    #: Most tags one invalidation script call handles: about 2 ms of Redis time, far below 20
    #: ms even when the server shares a busy machine.
    TAGS_PER_CALL = 200

    #: Replaces an error of the client by the connection error it stands for (see cluster_store.py).
    _translate: Callable[[BaseException], Exception | None] | None = None

    scripts: Any  # a ScriptRunner, or its asyncio twin

    def __init__(
        self,
        client: Any,
        *,
        make_key: MakeKey,
        options: StoreOptions,
        scripts: Any = None,
        breaker: CircuitBreaker | None = None,
        namespace: Callable[[], str | None] | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.keys = KeyScheme(make_key, options.key_prefix, namespace)
        self.scripts = scripts if scripts is not None else self._runner(client)
        self.breaker = breaker
        self._attempt_timeout: float | None = None  # how long one attempt may take, read at first use
        # On one server, scripts derive a tag's keys from its base key and touch member keys; a
        # cluster allows neither (the cluster store has its own steps, and no soft purges).
        self.standalone = not isinstance(client, (RedisCluster, AsyncRedisCluster))
        # Tag -> staleness budget in ms (soft purge); single server only, set by the store factory.
        self.staleness: Callable[[str], int] | None = None
        # Where invalidations are announced to other services (docs/events.md); set by the factory.
        self.events: EventOptions | None = None

    def _runner(self, client: Any) -> Any:
        raise NotImplementedError

    async def _io(self, func: Callable[[], Any]) -> Any:
        """One Redis call (``func`` sends it): :meth:`_guarded`, as the transport runs it."""
        raise NotImplementedError

    def _sleep(self, budget: Budget) -> Callable[[float], Awaitable[None]]:
        """How the transport waits between attempts (blocking, or yielding to the loop)."""
        raise NotImplementedError

    async def _guarded(self, func: Callable[[], Any]) -> Any:
        """Run one Redis call under the time budget, the circuit breaker and the retry policy."""
        # The unit of work's budget; without one, the call's own is made only if an attempt fails.
        budget = unit_budget.get()
        if self._attempt_timeout is None:
            self._attempt_timeout = client_attempt_timeout(self.client)
        # Before the breaker: a call refused for want of budget must not hold the half-open probe.
        # (A budget nothing was charged to yet pays for any first attempt.)
        if budget is not None and budget.spent:
            check_budget(budget, self._attempt_timeout)
        breaker = self.breaker
        if breaker is not None and not breaker.healthy:
            breaker.before_call()  # raises CircuitOpen (a connection error) while Redis is down
        try:
            # The first attempt: retry.attempts() written out, one coroutine fewer on every call's path.
            started = time.monotonic()
            try:
                result = func()
                if type(result) is CoroutineType or inspect.isawaitable(result):
                    result = await result
                failure = None
            except BaseException as exc:
                failure = exc
            if failure is not None:  # outside the except block: retries do not chain to it
                result = await retried(
                    self.options.retry,
                    func,
                    self._attempt_timeout,
                    budget,
                    self._translate,
                    self._sleep,
                    failure,
                    started,
                )
        except ConnectionsBusy:
            if breaker is not None:
                breaker.release()  # the loop's connections were busy: nothing learned about Redis
            raise
        except RETRYABLE:
            if breaker is not None:
                breaker.record_failure()
            raise
        except Exception:
            if breaker is not None:
                breaker.record_success()  # Redis answered, if only with an error: it is up
            raise
        except BaseException:
            if breaker is not None:
                breaker.release()  # cancelled or interrupted: nothing learned about Redis
            raise
        if breaker is not None and not breaker.healthy:
            breaker.record_success()
        return result

    async def _write(
        self,
        entry: str,
        payload: bytes,
        ttl_ms: int,
        tags: Sequence[str],
        expected: Sequence[str] | None = None,
        owner: str = "",
        fence_us: int = 0,
    ) -> bool:
        """Store an entry and its tag memberships atomically; False if a generation moved.

        ``owner`` releases the recompute lock taken by :meth:`prepare_miss`, stored or not.
        A checked write (``expected``) is also refused while an invalidation of a tag drains, or
        if one completed after the read fence ``fence_us`` (see :mod:`django_tagcache.caching.fences`).
        Without tags, check or lock this is a plain SET.
        """
        if not tags and not owner:
            if ttl_ms:
                return bool(await self._io(lambda: self.client.set(entry, payload, px=ttl_ms)))
            return bool(await self._io(lambda: self.client.set(entry, payload)))
        keys, args = plan_write(
            self.keys, self.options, entry, payload, ttl_ms, tags, expected, owner, fence_us
        )
        return bool(await self._io(lambda: self.scripts("write", keys, args)))

    async def _prepare_miss(self, entry: str, tags: Sequence[str], *, lock_ttl_ms: int = 0) -> Miss:
        """After a miss: the tags' generation tokens (created where missing), the recompute lock if
        ``lock_ttl_ms`` (single flight), and the entry if it appeared meanwhile: one script call."""
        owner = new_token() if lock_ttl_ms else ""
        keys, args = plan_miss(self.keys, self.options, entry, tags, owner, lock_ttl_ms)
        return parse_miss(await self._io(lambda: self.scripts("miss", keys, args)), owner)

    async def _finish_miss(
        self,
        entry: str,
        payload: bytes,
        ttl_ms: int,
        tags: Sequence[str],
        expected: Sequence[str] | None,
        owner: str,
        fence_us: int = 0,
    ) -> bool:
        """Write a recomputed entry (checked against ``expected`` and the read fence ``fence_us``)
        and release the lock ``owner`` holds, in one script call."""
        return await self._write(entry, payload, ttl_ms, tags, expected, owner, fence_us)

    async def _lock(self, entry: str, owner: str, lock_ttl_ms: int) -> bool:
        """Take the recompute lock of ``entry`` for ``owner`` unless someone holds it (a plain SET NX)."""
        return bool(await self._io(lambda: self.client.set(entry + ":lock", owner, nx=True, px=lock_ttl_ms)))

    async def _unlock(self, entry: str, owner: str) -> None:
        """Release a recompute lock this caller holds (after a failed compute)."""
        await self._io(lambda: self.scripts("unlock", [entry + ":lock"], [owner]))

    async def _generations(self, tags: Sequence[str]) -> list[str]:
        """The current generation token of each tag, created where missing: one script call."""
        return [token or "" for token in await self._tokens(tags, draining=False)]

    async def _vouching_generations(self, tags: Sequence[str]) -> list[str | None]:
        """:meth:`generations`, but None for a tag whose invalidation is still draining: entries
        read under it now may be old ones, so a fragment or page cannot be vouched for by them."""
        return await self._tokens(tags, draining=True)

    async def _tokens(self, tags: Sequence[str], *, draining: bool) -> list[str | None]:
        if not tags:
            return []
        keys, args = plan_generations(self.keys, self.options, tags, draining=draining)
        reply = await self._io(lambda: self.scripts("generations", keys, args))
        return [None if token is None else text(token) for token in reply]

    async def _delete(self, entry: str) -> bool:
        """Delete one entry; True if it existed."""
        return bool(await self._io(lambda: self.client.delete(entry)))

    async def _invalidate(self, tags: Sequence[str], origin: str | None = None) -> int:
        """Delete every entry indexed under ``tags`` and move their generations; returns entries removed.

        Up to :attr:`TAGS_PER_CALL` small tags take one script call in all; more tags take one
        call per slice of that many, each atomic on its own, pipelined in one round trip (Redis
        runs them one after the other, serving other clients in between). An index too big for
        one call is renamed aside in that same call (so new writes start a fresh index and the
        generations have moved), then drained in chunks of ``chunk_size`` entries, each chunk
        one short script call.

        With :attr:`events` set and an ``origin`` (what invalidates: ``orm``, ``api``, ...), each
        script call also appends one event naming its own tags, in that same call (so an
        invalidation of more than :attr:`TAGS_PER_CALL` tags is announced by one event per call:
        each event is exactly as atomic as the invalidation it announces). Without an origin
        (applying another service's event) nothing is announced.
        """
        if not tags:
            return 0
        if self.options.invalidation_replicas and self.standalone:
            return await self._invalidate_acknowledged(tags, origin)
        return await self._invalidate_here(tags, origin)

    async def _invalidate_acknowledged(self, tags: Sequence[str], origin: str | None) -> int:
        """:meth:`invalidate`, returning once ``invalidation_replicas`` replicas hold it (replication.py)."""
        wanted, timeout_ms = self.options.invalidation_replicas, self.options.replica_timeout_ms
        single = replication.pinned(self.client)
        try:
            pinned = copy.copy(self)
            pinned.client, pinned.scripts = single, self.scripts.pinned(single)
            removed = await pinned._invalidate_here(tags, origin)
            acked = int(await self._io(lambda: single.wait(wanted, timeout_ms)))
        finally:
            await settle(replication.release(single))
        replication.require(acked, wanted, len(tags), timeout_ms)
        return removed

    async def _invalidate_here(self, tags: Sequence[str], origin: str | None = None) -> int:
        """:meth:`invalidate` on this store's own client, without waiting for replicas."""
        calls, budgets = self._plan_invalidation(tags, origin)
        if len(calls) == 1:
            replies = [await self._io(lambda: self.scripts("invalidate", *calls[0]))]
        else:
            replies = await self._io(lambda: self.scripts.pipelined("invalidate", calls))
        removed, drains = self._read_invalidation(tags, calls, budgets, replies)
        for aside, pending_set, stale_ms in drains:
            removed += await self._drain(aside, pending_set, stale_ms)
        return removed

    def _plan_invalidation(
        self, tags: Sequence[str], origin: str | None
    ) -> tuple[list[tuple[list[str], list[Any]]], list[int] | None]:
        """The script calls of :meth:`_invalidate_here` (no I/O), and each tag's staleness budget
        (None: every tag's is 0)."""
        step = self.TAGS_PER_CALL
        staleness = self.staleness
        budgets = [staleness(tag) for tag in tags] if staleness is not None else None
        if budgets is not None and not any(budgets):
            budgets = None
        events = self.events if origin is not None else None
        namespace = self.keys.namespace() if events is not None else None
        return [
            plan_invalidate(
                self.keys,
                self.options,
                tags[first : first + step],
                None if budgets is None else budgets[first : first + step],
                ()
                if events is None or origin is None
                else event_args(events, namespace, origin, tags[first : first + step]),
            )
            for first in range(0, len(tags), step)
        ], budgets

    def _read_invalidation(
        self,
        tags: Sequence[str],
        calls: Sequence[tuple[list[str], list[Any]]],
        budgets: Sequence[int] | None,
        replies: Sequence[Any],
    ) -> tuple[int, list[tuple[str, str, int]]]:
        """Read the replies of :meth:`_plan_invalidation`'s calls (no I/O): the entries removed, and
        the indexes set aside that are still to drain, each with its pending set and staleness
        budget. Reports each tag's completion times to whoever collects them (completions.py)."""
        step = self.TAGS_PER_CALL
        removed = 0
        drains: list[tuple[str, str, int]] = []
        wanted = completions.wanted()
        for (keys, _args), reply, first in zip(calls, replies, range(0, len(tags), step), strict=True):
            count = len(keys)
            removed_here, pending = parse_invalidate(reply, count)
            if wanted:
                completions.record(tags[first : first + step], completions_of(reply, count))
            removed += removed_here
            if pending:
                by_pending = dict.fromkeys((base + ":p" for base in keys), 0)
                if budgets is not None:
                    by_pending.update(zip((base + ":p" for base in keys), budgets[first:], strict=False))
                drains += [
                    (aside, pending_set, by_pending.get(pending_set, 0)) for aside, pending_set in pending
                ]
        return removed, drains

    async def _mark(self, tags: Sequence[str], mark: str, *, raised: bool) -> None:
        """Raise (or lower) ``mark`` in each tag's in-progress set: while raised, checked writes
        under the tags are refused and no read vouches for them, as while they drain (marks.lua).

        An invalidation spanning several cache aliases raises its mark in all of them first, and
        lowers it once every alias is invalidated. One script call for up to
        :attr:`TAGS_PER_CALL` tags, pipelined beyond.
        """
        if not tags:
            return
        ttl = self.options.drain_guard_ttl_ms if raised else 0
        step = self.TAGS_PER_CALL
        calls = [
            ([self.keys.tag(tag) + ":w" for tag in tags[first : first + step]], [mark, ttl])
            for first in range(0, len(tags), step)
        ]
        if len(calls) == 1:
            await self._io(lambda: self.scripts("marks", *calls[0]))
        else:
            await self._io(lambda: self.scripts.pipelined("marks", calls))

    async def _drain(self, aside: str, pending_set: str, stale_ms: int = 0) -> int:
        """Delete (or soften, see ``stale_ms``) the entries of an index renamed aside, chunk by chunk."""
        removed = 0
        keys = [aside, pending_set]
        args = [self.options.chunk_size, stale_ms, self.options.generation_ttl_ms]
        while True:
            reply = await self._io(lambda: self.scripts("drain", keys, args))
            removed += int(reply[0])
            if int(reply[1]) == 0:
                return removed
