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
doing I/O; the steps of a store are written once in :mod:`.steps`, and :class:`TagStore` runs
them on a blocking redis-py client (:class:`~.aio_store.AsyncTagStore` on ``redis.asyncio``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .bridge import blocking, run_sync
from .keys import KeyScheme, MakeKey, hash_tag
from .protocol import (
    Miss,
    StoreOptions,
    new_token,
    new_tokens,
    parse_invalidate,
    parse_miss,
    plan_generations,
    plan_invalidate,
    plan_miss,
    plan_write,
)
from .retry import blocking_sleep
from .scripts import ScriptRunner
from .steps import TagSteps

if TYPE_CHECKING:
    import redis

    from .timebudget import Budget

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


class TagStore(TagSteps):
    """Blocking Redis I/O for tagged entries. Every call retries connection errors under the policy."""

    client: redis.Redis
    scripts: ScriptRunner

    def _runner(self, client: Any) -> ScriptRunner:
        return ScriptRunner(client)

    def _call(self, func: Callable[[], T]) -> T:
        """Run one Redis call under the time budget, the circuit breaker and the retry policy."""
        return run_sync(self._guarded(func))  # type: ignore[no-any-return]

    async def _io(self, func: Callable[[], Any]) -> Any:
        # Through _call, the one place every Redis call of this store passes (the tests' scheduler
        # switches threads there). Blocking: the step's coroutine never suspends (see bridge.py).
        return self._call(func)

    def _sleep(self, budget: Budget) -> Callable[[float], Awaitable[None]]:
        return blocking_sleep(budget)

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

    write = blocking(TagSteps._write)
    prepare_miss = blocking(TagSteps._prepare_miss)
    finish_miss = blocking(TagSteps._finish_miss)
    lock = blocking(TagSteps._lock)
    unlock = blocking(TagSteps._unlock)
    generations = blocking(TagSteps._generations)
    vouching_generations = blocking(TagSteps._vouching_generations)
    delete = blocking(TagSteps._delete)

    def invalidate(self, tags: Sequence[str], origin: str | None = None) -> int:
        """Blocking :meth:`~.steps.TagSteps._invalidate`.

        Every model write runs this, mostly with a few tags: then it is one script call, sent
        straight from here (the same planning, guarding and reading as the steps, without
        running them as a coroutine). Anything else runs the steps.
        """
        if not tags or len(tags) > self.TAGS_PER_CALL or not self._direct_invalidation:
            return run_sync(self._invalidate(tags, origin))
        calls, budgets = self._plan_invalidation(tags, origin)
        keys, args = calls[0]
        reply = self._call(lambda: self.scripts("invalidate", keys, args))
        removed, drains = self._read_invalidation(tags, calls, budgets, (reply,))
        for aside, pending_set, stale_ms in drains:
            removed += self.drain(aside, pending_set, stale_ms)
        return removed

    @property
    def _direct_invalidation(self) -> bool:
        """Whether :meth:`invalidate` may send its one script call itself: a single server, no
        replicas to wait for, and the steps of this class, not a subclass's own."""
        return (
            self.standalone
            and not self.options.invalidation_replicas
            and type(self)._invalidate is TagSteps._invalidate
            and type(self)._invalidate_here is TagSteps._invalidate_here
        )

    invalidate_here = blocking(TagSteps._invalidate_here)
    drain = blocking(TagSteps._drain)
    mark = blocking(TagSteps._mark)
