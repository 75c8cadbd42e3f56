"""The public caching API: :data:`tagcache`, :func:`invalidate_tags` and :func:`cached`.

This is the Django adapter over :mod:`django_tagcache.core.store`: it reads settings, resolves tag
sources, serializes values and decides what a Redis failure means for each call. Entry reads
and writes fail open (logged and counted; the caller gets its value); invalidations never do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from ..conf import conf
from ..core import metrics, protections, serialization, telemetry
from ..core.bridge import run_sync, settle
from ..core.memory import MemorySteps
from ..core.protocol import text
from ..core.retry import RETRYABLE
from ..core.telemetry import timed
from ..signals import invalidation_failed, tags_invalidated
from . import near as l1
from . import reach, recompute, requestcache
from .bubbling import note_tags
from .exceptions import TagCacheUnavailable
from .failopen import fail_open
from .flows import ASYNC, BLOCKING, Flow, awaited, blocking
from .namespaces import in_namespace
from .origins import event_source
from .scopes import anote_tags
from .shadow import Origin
from .stores import get_async_store, get_store
from .stores import reset_stores as _reset_stores
from .tags import normalize_tags

if TYPE_CHECKING:
    from ..core.store import TagStore

_NAMESPACE_IN_KEY = re.compile(r":n:([A-Za-z0-9_.-]{1,64}):t:\{")

__all__ = [
    "DEFAULT_TIMEOUT",
    "TagCache",
    "ainvalidate_tags",
    "get_async_store",
    "get_store",
    "invalidate_tags",
    "reset_stores",
    "tagcache",
]

logger = logging.getLogger("django_tagcache")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT_TIMEOUT"


#: Use ``TAGCACHE['DEFAULT_TIMEOUT']``.
DEFAULT_TIMEOUT: Final = _Default()
_MISSING: Final = object()


def _ttl_ms(timeout: float | _Default | None) -> int | None:
    """Milliseconds to live, 0 for "never expires", None for "do not store" (timeout <= 0)."""
    if isinstance(timeout, _Default):
        timeout = conf.DEFAULT_TIMEOUT
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}.")
    if timeout <= 0:
        return None
    return max(1, int(timeout * 1000))


class TagCache:
    """Cache values under tags in the Redis behind one cache alias.

    ``TagCache()`` follows ``TAGCACHE['CACHE']``; ``TagCache("other")`` pins another alias.
    """

    def __init__(self, alias: str | None = None) -> None:
        self._alias = alias

    def __repr__(self) -> str:
        return f"TagCache({self._alias!r})"

    @property
    def store(self) -> TagStore:
        return get_store(self._alias)

    def _fail_open(self, what: str, exc: Exception) -> None:
        fail_open(what, exc)

    # Each operation is written once, as coroutine steps over a Flow (see flows.py): the blocking
    # methods run them to the end at once, their ``a``-twins await them on redis.asyncio.

    @property
    def alias(self) -> str:
        return self._alias or conf.CACHE

    async def _read_steps(self, flow: Flow, key: str, version: int | None, near: bool | None = None) -> Any:
        try:
            store: Any
            if flow.asynchronous:
                # The loop's store of this alias, found without reading the settings (see stores.py).
                store = get_async_store(self._alias)  # a cluster never reached raises here
                alias, own, io = store.alias, store.blocking, store
            else:
                alias = self._alias or conf.CACHE
                store = own = get_store(alias)
                io = None
            entry = store.keys.entry(key, version)
            # L1 and L0 are keyed by the blocking store, whichever transport reads Redis.
            use = l1.wanted(alias, own, near, None)
            raw = use.cache.get(entry) if use is not None else None
            if raw is not None:  # an L1 hit: no Redis call to time or trace
                loaded = serialization.loads(raw)
                if loaded is not None:
                    metrics.near_hit()
                    return loaded[0]
            # Timed always; a span only when a tracer provider is configured (next to free otherwise).
            raw = await timed("read", partial(l1.fetch, own, entry, use, io=io))
        except RETRYABLE as exc:
            self._fail_open("read", exc)
            return _MISSING
        loaded = None if raw is None else serialization.loads(raw)
        if loaded is None:  # absent, or not readable (another format, foreign): a miss
            metrics.incr("misses")
            return _MISSING
        metrics.incr("hits")
        return loaded[0]

    def _read(self, key: str, version: int | None, near: bool | None = None) -> Any:
        return run_sync(self._read_steps(BLOCKING, key, version, near))

    def get(self, key: str, default: Any = None, version: int | None = None, near: bool | None = None) -> Any:
        """The value cached under ``key``, or ``default``. One GET (none on a near-cache hit).

        ``near`` overrides ``TAGCACHE['NEAR_CACHE']['DEFAULT']`` for this call (see docs/near-cache.md).
        The steps of :meth:`aget`, run at once; a near-cache hit, a few microseconds, is this
        call's hot path: it is tried first, without building the key through ``make_key`` where
        that gives the same key (l1.hit).
        """
        raw = l1.hit(self._alias, key, version, near)
        if raw is not None:  # an L1 hit, taken before any key, store or coroutine is built
            loaded = serialization.loads(raw)
            if loaded is not None:
                metrics.near_hit()
                return loaded[0]
        value = run_sync(self._read_steps(BLOCKING, key, version, near))
        return default if value is _MISSING else value

    async def aget(
        self, key: str, default: Any = None, version: int | None = None, near: bool | None = None
    ) -> Any:
        """The value cached under ``key``, or ``default``. One GET (none on a near-cache hit).

        ``near`` overrides ``TAGCACHE['NEAR_CACHE']['DEFAULT']`` for this call (see docs/near-cache.md).
        The steps of :meth:`get`, awaited on the loop's ``redis.asyncio`` client. A read with no
        near cache, no request cache and no tracing, the hot path of an async view, is written
        out here: one coroutine awaits the guarded GET, where the full steps nest four more.
        """
        try:
            # The loop's store of this alias, found without reading the settings (see stores.py).
            store = get_async_store(self._alias)  # a cluster never reached raises here
            entry = store.keys.entry(key, version)
            # l1.wanted(), its first step inlined: an alias without a near cache asks nothing more.
            known = l1.nears.get(store.alias, l1)
            use = None if known is None else l1.wanted(store.alias, store.blocking, near, None)
        except RETRYABLE as exc:
            self._fail_open("read", exc)
            return default
        if use is not None or requestcache.entries.get() is not None or telemetry.tracing():
            value = await self._read_steps(ASYNC, key, version, near)
            return default if value is _MISSING else value
        started = perf_counter()
        try:
            raw = await store.get(entry)
        except BaseException as exc:
            metrics.observe_duration("read", perf_counter() - started)
            if isinstance(exc, RETRYABLE):
                self._fail_open("read", exc)
                return default
            raise
        seconds = perf_counter() - started
        loaded = None if raw is None else serialization.loads(raw)
        if loaded is None:  # absent, or not readable (another format, foreign): a miss
            metrics.observe_read(seconds, "misses")
            return default
        metrics.observe_read(seconds, "hits")
        return loaded[0]

    async def _set_steps(
        self,
        flow: Flow,
        key: str,
        value: Any,
        timeout: float | _Default | None = DEFAULT_TIMEOUT,
        tags: object = None,
        version: int | None = None,
    ) -> bool:
        """Cache ``value`` under ``key`` and ``tags``; the entry and its tag memberships are one atomic write.

        ``timeout`` is in seconds (None: never expires; 0 or less: not stored, and any entry under
        ``key`` is deleted). Returns True if stored. Bad tags raise TypeError/ValueError and a
        value over ``MAX_ENTRY_SIZE`` raises ValueError, all before Redis is touched.
        """
        tag_list = normalize_tags(tags)
        ttl = _ttl_ms(timeout)
        if ttl is None:
            await self._delete_steps(flow, key, version)
            return False
        payload = serialization.dumps(value)
        if len(payload) > conf.MAX_ENTRY_SIZE:
            raise ValueError(
                f"Value for {key!r} is {len(payload)} bytes serialized; TAGCACHE['MAX_ENTRY_SIZE'] is "
                f"{conf.MAX_ENTRY_SIZE}."
            )
        try:
            store = flow.store(self._alias)  # a cluster never reached raises here
            entry = store.keys.entry(key, version)
        except RETRYABLE as exc:
            self._fail_open("write", exc)
            return False
        try:
            stored = await timed(
                "write", lambda: store.write(entry, payload, ttl, tag_list), tags=len(tag_list)
            )
        except RETRYABLE as exc:
            l1.wrote(
                self.alias, get_store(self.alias), entry
            )  # the write may have landed: forget the old copy
            self._fail_open("write", exc)
            return False
        l1.wrote(self.alias, get_store(self.alias), entry, payload if stored else None)
        if stored:
            metrics.incr("stores")
        return bool(stored)

    set = blocking(_set_steps)
    aset = awaited(_set_steps)

    async def _get_or_set_steps(
        self,
        flow: Flow,
        key: str,
        default: Any,
        timeout: float | _Default | None = DEFAULT_TIMEOUT,
        tags: object = None,
        version: int | None = None,
        near: bool | None = None,
    ) -> Any:
        """The cached value of ``key``; on a miss, compute ``default()`` (or take ``default``) and cache it.

        The write is refused, and counted, if any of ``tags`` was invalidated between the miss and
        the write: a value computed from data read before an invalidation is never stored. The
        caller gets the computed value either way. Bad tags raise before Redis is touched.
        ``aget_or_set`` awaits what ``default()`` returns if it is awaitable (a coroutine function),
        and concurrent misses of ``key`` in one event loop share one computation.
        """
        tag_list = normalize_tags(tags)
        if flow.asynchronous:
            await anote_tags(tag_list)  # tokens new to an open page: read on the loop, not blocking it
        else:
            note_tags(tag_list)
        origin = Origin(key, callable(default))
        return await self._get_or_compute_steps(
            flow, key, default, timeout, lambda: tag_list, version, tags, origin, near
        )

    get_or_set = blocking(_get_or_set_steps)
    aget_or_set = awaited(_get_or_set_steps)

    async def _get_or_compute_steps(
        self,
        flow: Flow,
        key: str,
        default: Any,
        timeout: float | _Default | None,
        tags: Callable[[], tuple[str, ...]],
        version: int | None,
        sources: object = None,
        origin: Origin | None = None,
        near: bool | None = None,
    ) -> Any:
        """``tags`` returns normalized tags; it is called only on a miss, or before the read when
        the near cache may serve it. Model instances in ``sources`` bound the write's read fence
        by their load time."""

        def compute() -> Any:
            return default() if callable(default) else default

        alias = self._alias or conf.CACHE
        try:
            store = flow.store(alias)
        except RETRYABLE as exc:
            self._fail_open("read", exc)
            return await recompute.served_without_cache(flow, compute)
        entry = store.keys.entry(key, version)
        return await recompute.steps(
            flow, store, entry, compute, _ttl_ms(timeout), tags, sources, origin, alias, near
        )

    async def _delete_steps(self, flow: Flow, key: str, version: int | None = None) -> bool:
        """Delete one entry; True if it existed. Its tag indexes forget it when it would have expired."""
        try:
            store = flow.store(self._alias)
            entry = store.keys.entry(key, version)
            try:
                return bool(await settle(store.delete(entry)))
            finally:
                l1.wrote(self.alias, get_store(self.alias), entry)
        except RETRYABLE as exc:
            self._fail_open("delete", exc)
            return False

    delete = blocking(_delete_steps)
    adelete = awaited(_delete_steps)

    async def _invalidate_tags_steps(
        self, flow: Flow, *tags: object, source: str | None = None, all_namespaces: bool = False
    ) -> int:
        """Delete every entry cached under any of ``tags``; returns the number of entries removed.

        One script call for up to 200 tags, one per slice of 200 beyond (tags with more than
        ``CHUNK_SIZE`` entries are then drained in further short calls). When it returns, no read
        sees an entry written under those tags before the call. Raises
        :class:`TagCacheUnavailable` if Redis cannot be reached within the retry budget: an
        invalidation is never silently dropped.

        Only the current namespace is touched, unless ``all_namespaces`` (which needs ``source``,
        for the audit, and scans the keyspace for the namespaces that use the tags; from
        ``ainvalidate_tags`` that scan and its invalidations are awaited on ``redis.asyncio``).
        """
        tag_list = normalize_tags(list(tags))
        if not all_namespaces:
            return await self._invalidate_steps(flow, tag_list, source)
        return await self._invalidate_everywhere_steps(flow, tag_list, source)

    invalidate_tags = blocking(_invalidate_tags_steps)
    ainvalidate_tags = awaited(_invalidate_tags_steps)

    async def _invalidate_everywhere_steps(
        self, flow: Flow, tag_list: tuple[str, ...], source: str | None
    ) -> int:
        """Invalidate in every namespace that has entries under the tags (a SCAN of the keyspace)."""
        if not source:
            raise ValueError("A purge across all namespaces must say who asks for it: pass source=.")
        found: set[str | None] = {None}
        try:
            for alias in (self._alias,) if self._alias else reach.invalidated_aliases():
                store = flow.store(alias)
                for pattern in _namespace_patterns(store, tag_list):
                    for key in await _scanned(flow, store, pattern):
                        name = _NAMESPACE_IN_KEY.search(text(key))
                        if name:
                            found.add(name.group(1))
        except RETRYABLE as exc:
            raise TagCacheUnavailable(
                f"Could not list the namespaces of {len(tag_list)} tag(s): {exc}"
            ) from exc
        removed = 0
        for namespace in sorted(found, key=lambda n: n or ""):
            with in_namespace(namespace):
                removed += await self._invalidate_steps(flow, tag_list, source)
        return removed

    async def _invalidate_steps(
        self, flow: Flow, tag_list: tuple[str, ...], source: str | None = None
    ) -> int:
        """:meth:`invalidate_tags` for tags already validated (sorted, distinct strings).

        A ``TagCache`` pinned to an alias invalidates that alias; ``TagCache()`` (and so
        :func:`invalidate_tags` and model writes) every alias in :func:`.reach.invalidated_aliases`.
        """
        if not tag_list:
            return 0
        aliases = (self._alias,) if self._alias else reach.invalidated_aliases()
        try:
            if len(aliases) == 1:
                removed = await self._invalidate_in(flow, aliases[0], tag_list, source)
            else:
                removed = await reach.invalidate_across(
                    flow, aliases, tag_list, lambda alias: self._invalidate_in(flow, alias, tag_list, source)
                )
        except RETRYABLE as exc:
            error = TagCacheUnavailable(f"Could not invalidate {len(tag_list)} tag(s): {exc}")
            await self._failed(flow, tag_list, source, error)
            raise error from exc
        except TagCacheUnavailable as exc:  # some of several aliases: the others are invalidated
            await self._failed(flow, tag_list, source, exc)
            raise
        metrics.incr_many({"invalidations": 1, "tags_invalidated": len(tag_list), "entries_removed": removed})
        await flow.send(tags_invalidated, TagCache, tags=tag_list, removed=removed, source=source)
        return removed

    @staticmethod
    async def _failed(flow: Flow, tag_list: tuple[str, ...], source: str | None, error: Exception) -> None:
        metrics.incr("failures")
        await flow.send(invalidation_failed, TagCache, tags=tag_list, source=source, error=error)

    async def _invalidate_in(
        self, flow: Flow, alias: str, tag_list: tuple[str, ...], source: str | None
    ) -> int:
        """Invalidate ``tag_list`` in one alias; raises the connection error if it cannot."""
        store = flow.store(alias)
        origin = event_source(source)
        try:
            return int(
                await timed("invalidate", lambda: store.invalidate(tag_list, origin), tags=len(tag_list))
            )
        finally:
            # Even a failed call may have removed entries: drop this process's copies either way.
            await l1.invalidated(alias, flow.asynchronous)

    invalidate_normalized = blocking(_invalidate_steps)
    ainvalidate_normalized = awaited(_invalidate_steps)


#: The cache on ``TAGCACHE['CACHE']``.
tagcache = TagCache()


def _namespace_patterns(store: Any, tag_list: tuple[str, ...]) -> list[str]:
    """The SCAN patterns that find every namespace using ``tag_list``.

    A namespace with entries under a tag has its index; one whose first entry under it is being
    computed has only its generation (created at the miss), and must be found too: moving that
    generation is what refuses the value computed before the purge.
    """
    suffixes = (":i", ":g") if protections.on("namespace_scan") else (":i",)
    return [store.keys.tag_pattern(tag, suffix) for tag in tag_list for suffix in suffixes]


async def _scanned(flow: Flow, store: Any, pattern: str) -> list[Any]:
    """The keys matching ``pattern``: SCAN through the flow's client (asyncio or blocking)."""
    if isinstance(store, MemorySteps):
        return list(store.scan_keys(pattern))
    if flow.asynchronous:
        return [key async for key in store.client.scan_iter(match=pattern, count=1000)]
    return list(store.client.scan_iter(match=pattern, count=1000))


def invalidate_tags(*tags: object, source: str | None = None, all_namespaces: bool = False) -> int:
    """Invalidate ``tags`` on the default tag cache; see :meth:`TagCache.invalidate_tags`."""
    return tagcache.invalidate_tags(*tags, source=source, all_namespaces=all_namespaces)


async def ainvalidate_tags(*tags: object, source: str | None = None, all_namespaces: bool = False) -> int:
    """Invalidate ``tags`` on the default tag cache, awaited; see :meth:`TagCache.ainvalidate_tags`."""
    return await tagcache.ainvalidate_tags(*tags, source=source, all_namespaces=all_namespaces)


def reset_stores() -> None:
    """Forget every store and near cache; the next call builds them again from the current settings."""
    _reset_stores()
    l1.reset()
