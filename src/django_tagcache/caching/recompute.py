"""The miss path of ``get_or_set`` and ``@cached``: compute once, never store a stale value.

On a miss, one script call reads the tags' generation tokens and takes a short recompute lock
(single flight). The caller holding the lock computes and writes, the write checked against the
tokens (no stale write-back). The others wait up to ``STAMPEDE['WAIT']`` for the value to appear,
then compute it themselves; on the asyncio path, callers in one event loop first wait for the
one among them that misses first (:mod:`.flights`). With ``XFETCH_BETA`` set, a reader may
volunteer to recompute a hot entry shortly before it expires (XFetch) while everyone else keeps
reading the current value.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..conf import conf
from ..core import metrics, observations, protections, serialization
from ..core.bridge import settle
from ..core.retry import RETRYABLE
from ..core.telemetry import timed
from . import fences, flights, shadow
from . import near as l1
from .failopen import fail_open
from .scopes import computing, served_stale
from .stores import get_store

if TYPE_CHECKING:
    from .flows import Flow
    from .shadow import Origin

logger = logging.getLogger("django_tagcache")
MISSING: Final = object()


def jittered(ttl_ms: int, jitter: float) -> int:
    """Shorten a TTL by a random share of up to ``jitter``, so entries written together expire apart."""
    if not ttl_ms or jitter <= 0:
        return ttl_ms
    return max(1, int(ttl_ms * (1 - jitter * random.random())))


async def steps(
    flow: Flow,
    store: Any,
    entry: str,
    compute: Callable[[], Any],
    ttl_ms: int | None,
    tags: Callable[[], tuple[str, ...]],
    sources: object,
    origin: Origin | None = None,
    alias: str = "",
    near: bool | None = None,
) -> Any:
    """The value under ``entry``, computing and storing it on a miss (see the module docstring).

    ``store`` is the blocking or the asyncio store of ``flow`` (see :mod:`.flows`). ``ttl_ms``
    None means "compute, never store" (timeout <= 0); ``tags`` is called only on a miss.
    ``sources`` are the call's tag sources (and arguments): model instances among them bound the
    read fence of the write (see :mod:`django_tagcache.caching.fences`). On the asyncio flow,
    misses of one entry in one event loop wait for the first one's computation (:mod:`.flights`).
    ``origin`` names the key or function, for the stale-read auditor and the per-prefix metrics;
    the auditor samples the hits of the blocking flow only (it recomputes in a thread).
    """
    if shadow.bypassing():  # the auditor recomputes: the truth, not another cached value
        return await flow.call(compute)
    try:
        # L1 and L0 are keyed by the blocking store, whichever transport reads Redis. The near
        # cache needs the tags first: critical ones bypass it.
        own = get_store(alias) if flow.asynchronous and alias else store
        use = l1.wanted(alias, own, near, tags) if alias else None
        raw = await timed("read", lambda: l1.fetch(own, entry, use, io=store))
    except RETRYABLE as exc:
        fail_open("read", exc)
        return await served_without_cache(flow, compute)
    current: Any = MISSING
    loaded = None if raw is None else serialization.loads(raw)  # unreadable: a miss
    if loaded is not None:
        value, delta, expiry = loaded
        if not serialization.recompute_early(delta, expiry, conf.XFETCH_BETA):
            metrics.incr("hits")
            if not flow.asynchronous:
                shadow.offer(store, entry, raw, value, compute, tags, origin)
            return value
        current = value
        metrics.incr("early_recomputes")
    else:
        metrics.incr("misses")
        observations.count("misses", (_label(origin, entry),))
    if ttl_ms is None:
        return await flow.call(compute) if current is MISSING else current
    if flow.asynchronous and current is MISSING:
        return await flights.join(
            store, entry, lambda: _miss(flow, store, entry, compute, ttl_ms, tags(), sources, origin, alias)
        )
    return await _miss(flow, store, entry, compute, ttl_ms, tags(), sources, origin, alias, current)


async def _miss(
    flow: Flow,
    store: Any,
    entry: str,
    compute: Callable[[], Any],
    ttl_ms: int,
    tag_list: tuple[str, ...],
    sources: object,
    origin: Origin | None,
    alias: str,
    current: Any = MISSING,
) -> Any:
    """After a miss (or an XFetch volunteer, ``current`` the value still cached): take the lock or wait."""
    stampede = conf.STAMPEDE
    try:
        lock_ms = int(stampede.lock_ttl * 1000)
        miss = await timed(
            "miss", lambda: store.prepare_miss(entry, tag_list, lock_ttl_ms=lock_ms), tags=len(tag_list)
        )
    except RETRYABLE as exc:
        fail_open("miss", exc)
        return await served_without_cache(flow, compute) if current is MISSING else current
    stored = None if miss.payload is None or current is not MISSING else serialization.loads(miss.payload)
    if stored is not None:
        metrics.incr("hits")  # another caller stored it between our GET and the lock
        await _release(store, entry, miss.owner)  # taken in the same script: nobody computes now
        return stored[0]
    if stampede.lock_ttl and not miss.owner:
        if current is not MISSING:
            return current  # someone else is already recomputing early
        stale = None if miss.stale is None else serialization.loads(miss.stale)
        if stale is not None:
            metrics.incr("stale_served")  # within the tag's staleness budget, while one caller refreshes
            served_stale(tag_list)  # a fragment or page rendering now may not be stored
            return stale[0]
        waited = await _wait_for(flow, store, entry, stampede.wait, stampede.poll)
        if waited is not MISSING:
            return waited
        metrics.incr("stampede_timeouts")
    fence_us = fences.to_us(fences.read_fence(sources))
    value, kept = await _compute_and_store(
        flow,
        store,
        entry,
        compute,
        ttl_ms,
        tag_list,
        miss.tokens,
        miss.owner,
        fence_us,
        _label(origin, entry),
        alias,
    )
    if kept and not flow.asynchronous:
        shadow.remember(store, entry, origin, sources)
    return value


def _label(origin: Origin | None, entry: str) -> str:
    return origin.label if origin is not None else observations.prefix_of(entry)


async def served_without_cache(flow: Flow, compute: Callable[[], Any]) -> Any:
    """Compute for a caller that Redis failed: the time is counted (``failopen_compute``)."""
    started = time.monotonic()
    try:
        return await flow.call(compute)
    finally:
        observations.observe("failopen_compute", time.monotonic() - started)


async def _wait_for(flow: Flow, store: Any, entry: str, wait: float, poll: float) -> Any:
    """Poll for an entry another caller is computing, for at most ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        await flow.sleep(poll)
        try:
            raw = await settle(store.get(entry))
        except RETRYABLE as exc:
            fail_open("read", exc)
            return MISSING
        waited = None if raw is None else serialization.loads(raw)
        if waited is not None:
            metrics.incr("stampede_waits")
            return waited[0]
    return MISSING


async def _release(store: Any, entry: str, owner: str) -> None:
    """Release the recompute lock ``owner`` holds, if any; if Redis fails, it expires on its own."""
    if owner:
        with contextlib.suppress(*RETRYABLE):
            await settle(store.unlock(entry, owner))


async def _compute_and_store(
    flow: Flow,
    store: Any,
    entry: str,
    compute: Callable[[], Any],
    ttl_ms: int,
    tag_list: tuple[str, ...],
    tokens: list[str],
    owner: str,
    fence_us: int,
    label: str,
    alias: str = "",
) -> tuple[Any, bool]:
    """The computed value, and whether it was stored."""
    started = time.monotonic()
    try:
        with computing() as stale:
            value = await flow.call(compute)
    except BaseException:
        # Cancelled too: the lock goes now (a cancelled task may still await this once).
        await _release(store, entry, owner)
        raise
    if stale[0] and protections.on("computing"):  # built on a stale value: served, not stored
        metrics.incr("refused_writes")
        await _release(store, entry, owner)
        return value, False
    elapsed = time.monotonic() - started
    observations.observe("miss_compute", elapsed, (label,))
    ttl = jittered(ttl_ms, conf.TTL_JITTER)
    try:
        # Stamped with its write time: the auditor reports the age of an entry it finds stale.
        payload = serialization.dumps_stamped(value, elapsed, ttl)
    except serialization.Unpicklable as exc:
        # Served, not stored; the lock is released so the next caller computes at once.
        metrics.incr("unpicklable")
        logger.warning("django-tagcache: not caching %s: %s", entry, exc)
        payload = b""
    if not payload or len(payload) > conf.MAX_ENTRY_SIZE:
        if payload:
            metrics.incr("oversized")
            logger.warning(
                "django-tagcache: not caching %s: %d bytes is over MAX_ENTRY_SIZE.", entry, len(payload)
            )
        await _release(store, entry, owner)
        return value, False
    try:
        expected = tokens if tag_list else None
        stored = await timed(
            "write",
            lambda: store.finish_miss(entry, payload, ttl, tag_list, expected, owner, fence_us),
            tags=len(tag_list),
        )
    except RETRYABLE as exc:
        fail_open("write", exc)
        return value, False
    flights.seal(store, entry, bool(stored))  # before any other await: see flights.py
    if alias:  # this process's own later reads must not see an older copy (near cache, L0)
        l1.wrote(alias, get_store(alias), entry, payload if stored else None)
    metrics.incr("stores" if stored else "refused_writes")
    return value, bool(stored)
