"""The Redis side: entries, tag indexes and generations. No Django in here.

Layout, for a tag ``T`` (``P`` is the cache backend's key prefix and version, ``tagcache`` the
``KEY_PREFIX`` setting)::

    P:tagcache:e:<key>            an entry: the serialized value, with the entry's TTL
    P:tagcache:t:{T}:i            index of T: ZSET of entry keys scored by their expiry (ms)
    P:tagcache:t:{T}:g            generation of T: a random token, replaced on every invalidation,
                                  then '@' and when that invalidation completed (µs, Redis TIME)
    P:tagcache:t:{T}:p            pending set of T: indexes renamed aside and not yet drained
    P:tagcache:t:{T}:i:<token>    an index renamed aside by an invalidation too big for one call

The braces make a tag's keys share one Redis Cluster hash slot, so each script touches one slot
per tag. The functions ``plan_*``/``parse_*`` build script arguments and read replies without
doing I/O, so that another transport (an asyncio client) can reuse them; :class:`TagStore`
is the thin synchronous I/O layer on top.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from redis.cluster import RedisCluster

from . import completions, replication
from .events import EventOptions, event_args
from .keys import KeyScheme, MakeKey, hash_tag
from .protocol import (
    Miss,
    StoreOptions,
    completions_of,
    new_token,
    new_tokens,
    parse_invalidate,
    parse_miss,
    plan_generations,
    plan_invalidate,
    plan_miss,
    plan_write,
    text,
)
from .retry import RETRYABLE, call_with_retry
from .scripts import ScriptRunner
from .timebudget import budget_for, check_budget, client_attempt_timeout

if TYPE_CHECKING:
    import redis

    from .breaker import CircuitBreaker

# Re-exported: the store's collaborators, reachable from one module.
__all__ = [
    "KeyScheme",
    "MakeKey",
    "Miss",
    "StoreOptions",
    "TagStore",
    "hash_tag",
    "new_token",
    "new_tokens",
    "parse_invalidate",
    "parse_miss",
    "plan_generations",
    "plan_invalidate",
    "plan_miss",
    "plan_write",
]

T = TypeVar("T")


class TagStore:
    """Synchronous Redis I/O for tagged entries. Every call retries connection errors under the policy."""

    #: Most tags one invalidation script call handles: about 2 ms of Redis time, far below 20
    #: ms even when the server shares a busy machine.
    TAGS_PER_CALL = 200

    def __init__(
        self,
        client: redis.Redis,
        *,
        make_key: MakeKey,
        options: StoreOptions,
        scripts: ScriptRunner | None = None,
        breaker: CircuitBreaker | None = None,
        namespace: Callable[[], str | None] | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.keys = KeyScheme(make_key, options.key_prefix, namespace)
        self.scripts = scripts or ScriptRunner(client)
        self.breaker = breaker
        self._attempt_timeout: float | None = None  # how long one attempt may take, read at first use
        # On one server, scripts derive a tag's keys from its base key and touch member keys; a
        # cluster allows neither (ClusterTagStore has its own steps, and no soft purges).
        self.standalone = not isinstance(client, RedisCluster)
        # Tag -> staleness budget in ms (soft purge); single server only, set by the store factory.
        self.staleness: Callable[[str], int] | None = None
        # Where invalidations are announced to other services (docs/events.md); set by the factory.
        self.events: EventOptions | None = None

    def _call(self, func: Callable[[], T]) -> T:
        """Run one Redis call under the time budget, the circuit breaker and the retry policy."""
        policy = self.options.retry
        budget = budget_for(policy)
        if self._attempt_timeout is None:
            self._attempt_timeout = client_attempt_timeout(self.client)
        # Before the breaker: a call refused for want of budget must not hold the half-open probe.
        check_budget(budget, self._attempt_timeout)
        breaker = self.breaker
        if breaker is not None:
            breaker.before_call()  # raises CircuitOpen (a connection error) while Redis is down
        try:
            result = call_with_retry(policy, func, attempt_timeout=self._attempt_timeout, budget=budget)
        except RETRYABLE:
            if breaker is not None:
                breaker.record_failure()
            raise
        except BaseException:
            if breaker is not None:
                breaker.record_success()  # Redis answered, if only with an error: it is up
            raise
        if breaker is not None:
            breaker.record_success()
        return result

    def get(self, entry: str) -> bytes | None:
        """The raw payload of an entry, or None: one GET."""
        return self._call(lambda: self.client.get(entry))  # type: ignore[return-value]

    def get_with_ttl(self, entry: str) -> tuple[bytes | None, int]:
        """The raw payload of an entry and its PTTL in ms (-1: no expiry, -2: absent): one round trip."""

        def read() -> list[object]:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(entry)
            pipe.pttl(entry)
            return pipe.execute()

        payload, ttl = self._call(read)
        return payload, int(ttl)  # type: ignore[return-value,call-overload]

    def write(
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
                return bool(self._call(lambda: self.client.set(entry, payload, px=ttl_ms)))
            return bool(self._call(lambda: self.client.set(entry, payload)))
        keys, args = plan_write(
            self.keys, self.options, entry, payload, ttl_ms, tags, expected, owner, fence_us
        )
        return bool(self._call(lambda: self.scripts("write", keys, args)))

    def prepare_miss(self, entry: str, tags: Sequence[str], *, lock_ttl_ms: int = 0) -> Miss:
        """After a miss: the tags' generation tokens (created where missing), the recompute lock if
        ``lock_ttl_ms`` (single flight), and the entry if it appeared meanwhile: one script call."""
        owner = new_token() if lock_ttl_ms else ""
        keys, args = plan_miss(self.keys, self.options, entry, tags, owner, lock_ttl_ms)
        return parse_miss(self._call(lambda: self.scripts("miss", keys, args)), owner)

    def finish_miss(
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
        return self.write(entry, payload, ttl_ms, tags, expected, owner, fence_us)

    def lock(self, entry: str, owner: str, lock_ttl_ms: int) -> bool:
        """Take the recompute lock of ``entry`` for ``owner`` unless someone holds it (a plain SET NX)."""
        return bool(self._call(lambda: self.client.set(entry + ":lock", owner, nx=True, px=lock_ttl_ms)))

    def unlock(self, entry: str, owner: str) -> None:
        """Release a recompute lock this caller holds (after a failed compute)."""
        self._call(lambda: self.scripts("unlock", [entry + ":lock"], [owner]))

    def generations(self, tags: Sequence[str]) -> list[str]:
        """The current generation token of each tag, created where missing: one script call."""
        if not tags:
            return []
        keys, args = plan_generations(self.keys, self.options, tags)
        reply = self._call(lambda: self.scripts("generations", keys, args))
        return [text(token) for token in reply]

    def vouching_generations(self, tags: Sequence[str]) -> list[str | None]:
        """:meth:`generations`, but None for a tag whose invalidation is still draining: entries
        read under it now may be old ones, so a fragment or page cannot be vouched for by them."""
        if not tags:
            return []
        keys, args = plan_generations(self.keys, self.options, tags, draining=True)
        reply = self._call(lambda: self.scripts("generations", keys, args))
        return [None if token is None else text(token) for token in reply]

    def delete(self, entry: str) -> bool:
        return bool(self._call(lambda: self.client.delete(entry)))

    def invalidate(self, tags: Sequence[str], origin: str | None = None) -> int:
        """Delete every entry indexed under ``tags`` and move their generations; returns entries removed.

        With :attr:`events` set and an ``origin`` (what invalidates: ``orm``, ``api``, ...), each
        script call also appends one event naming its own tags, in that same call (so an
        invalidation of more than :attr:`TAGS_PER_CALL` tags is announced by one event per call:
        each event is exactly as atomic as the invalidation it announces). Without an origin
        (applying another service's event) nothing is announced.

        Up to :attr:`TAGS_PER_CALL` small tags take one script call in all; more tags take one
        call per slice of that many, each atomic on its own, pipelined in one round trip (Redis
        runs them one after the other, serving other clients in between). An index too big for
        one call is renamed aside in that same call (so new writes start a fresh index and the
        generations have moved), then drained in chunks of ``chunk_size`` entries, each chunk
        one short script call.
        """
        if not tags:
            return 0
        if self.options.invalidation_replicas and self.standalone:
            return self._invalidate_acknowledged(tags, origin)
        return self.invalidate_here(tags, origin)

    def _invalidate_acknowledged(self, tags: Sequence[str], origin: str | None) -> int:
        """:meth:`invalidate`, returning once ``invalidation_replicas`` replicas hold it (replication.py)."""
        wanted, timeout_ms = self.options.invalidation_replicas, self.options.replica_timeout_ms
        with replication.one_connection(self.client, self.scripts) as (single, scripts):
            pinned = copy.copy(self)
            pinned.client, pinned.scripts = single, scripts
            removed = pinned.invalidate_here(tags, origin)
            acked = int(self._call(lambda: single.wait(wanted, timeout_ms)))
        replication.require(acked, wanted, len(tags), timeout_ms)
        return removed

    def invalidate_here(self, tags: Sequence[str], origin: str | None = None) -> int:
        """:meth:`invalidate` on this store's own client, without waiting for replicas."""
        step = self.TAGS_PER_CALL
        budgets = [self.staleness(tag) for tag in tags] if self.staleness is not None else [0] * len(tags)
        events, namespace = self.events, self.keys.namespace()
        calls = [
            plan_invalidate(
                self.keys,
                self.options,
                tags[first : first + step],
                budgets[first : first + step],
                ()
                if events is None or origin is None
                else event_args(events, namespace, origin, tags[first : first + step]),
            )
            for first in range(0, len(tags), step)
        ]
        if len(calls) == 1:
            replies = [self._call(lambda: self.scripts("invalidate", *calls[0]))]
        else:
            replies = self._call(lambda: self.scripts.pipelined("invalidate", calls))
        removed = 0
        by_pending: dict[str, int] = {}
        for (keys, _args), reply, first in zip(calls, replies, range(0, len(tags), step), strict=True):
            count, pending = parse_invalidate(reply)
            if completions.wanted():
                completions.record(tags[first : first + step], completions_of(reply))
            removed += count
            by_pending.update(
                (base + ":p", budget) for base, budget in zip(keys, budgets[first:], strict=False)
            )
            for aside, pending_set in pending:
                removed += self.drain(aside, pending_set, by_pending.get(pending_set, 0))
        return removed

    def drain(self, aside: str, pending_set: str, stale_ms: int = 0) -> int:
        """Delete (or soften, see ``stale_ms``) the entries of an index renamed aside, chunk by chunk."""
        removed = 0
        keys = [aside, pending_set]
        args = [self.options.chunk_size, stale_ms, self.options.generation_ttl_ms]
        while True:
            reply = self._call(lambda: self.scripts("drain", keys, args))
            removed += int(reply[0])
            if int(reply[1]) == 0:
                return removed
