"""The miss path of ``get_or_set`` and ``@cached``: compute once, never store a stale value.

On a miss, one script call reads the tags' generation tokens and takes a short recompute lock
(single flight). The caller holding the lock computes and writes, the write checked against the
tokens (no stale write-back). The others wait up to ``STAMPEDE['WAIT']`` for the value to appear,
then compute it themselves. With ``XFETCH_BETA`` set, a reader may volunteer to recompute a hot
entry shortly before it expires (XFetch) while everyone else keeps reading the current value.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ..conf import conf
from ..core import metrics, observations, serialization
from ..core.retry import RETRYABLE
from ..core.telemetry import traced
from . import fences, shadow
from . import near as l1
from .failopen import fail_open
from .scopes import computing, served_stale

if TYPE_CHECKING:
    from ..core.store import TagStore
    from .shadow import Origin

logger = logging.getLogger("django_tagcache")
MISSING: Final = object()


def jittered(ttl_ms: int, jitter: float) -> int:
    """Shorten a TTL by a random share of up to ``jitter``, so entries written together expire apart."""
    if not ttl_ms or jitter <= 0:
        return ttl_ms
    return max(1, int(ttl_ms * (1 - jitter * random.random())))


def get_or_compute(
    store: TagStore,
    entry: str,
    compute: Callable[[], Any],
    ttl_ms: int | None,
    tags: Callable[[], tuple[str, ...]],
    sources: object = None,
    origin: Origin | None = None,
    alias: str = "",
    near: bool | None = None,
) -> Any:
    """The value under ``entry``, computing and storing it on a miss (see the module docstring).

    ``ttl_ms`` None means "compute, never store" (timeout <= 0); ``tags`` is called only on a miss.
    ``sources`` are the call's tag sources (and arguments): model instances among them bound the
    read fence of the write by their load time (see :mod:`django_tagcache.caching.fences`).
    ``origin`` names the key or function, for the stale-read auditor and the per-prefix metrics.
    """
    if shadow.bypassing():  # the auditor recomputes: the truth, not another cached value
        return compute()
    try:
        # The near cache needs the tags first: critical ones bypass it.
        use = l1.wanted(alias, store, near, tags) if alias else None
        raw = traced("read", lambda: l1.fetch(store, entry, use))
    except RETRYABLE as exc:
        fail_open("read", exc)
        return served_without_cache(compute)
    current: Any = MISSING
    loaded = None if raw is None else serialization.loads(raw)  # unreadable: a miss
    if loaded is not None:
        value, delta, expiry = loaded
        if not serialization.recompute_early(delta, expiry, conf.XFETCH_BETA):
            metrics.incr("hits")
            shadow.offer(store, entry, raw, value, compute, tags, origin)  # type: ignore[arg-type]  # raw: not None on a hit
            return value
        current = value
        metrics.incr("early_recomputes")
    else:
        metrics.incr("misses")
        observations.count("misses", (_label(origin, entry),))
    if ttl_ms is None:
        return compute() if current is MISSING else current
    tag_list = tags()
    stampede = conf.STAMPEDE
    try:
        lock_ms = int(stampede.lock_ttl * 1000)
        miss = traced(
            "miss", lambda: store.prepare_miss(entry, tag_list, lock_ttl_ms=lock_ms), tags=len(tag_list)
        )
    except RETRYABLE as exc:
        fail_open("miss", exc)
        return served_without_cache(compute) if current is MISSING else current
    stored = None if miss.payload is None or current is not MISSING else serialization.loads(miss.payload)
    if stored is not None:
        metrics.incr("hits")  # another caller stored it between our GET and the lock
        return stored[0]
    if stampede.lock_ttl and not miss.owner:
        if current is not MISSING:
            return current  # someone else is already recomputing early
        stale = None if miss.stale is None else serialization.loads(miss.stale)
        if stale is not None:
            metrics.incr("stale_served")  # within the tag's staleness budget, while one caller refreshes
            served_stale(tag_list)  # a fragment or page rendering now may not be stored
            return stale[0]
        waited = _wait_for(store, entry, stampede.wait, stampede.poll)
        if waited is not MISSING:
            return waited
        metrics.incr("stampede_timeouts")
    fence_us = fences.to_us(fences.read_fence(sources))
    value, kept = _compute_and_store(
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
    if kept:
        shadow.remember(store, entry, origin, sources)
    return value


def _label(origin: Origin | None, entry: str) -> str:
    return origin.label if origin is not None else observations.prefix_of(entry)


def served_without_cache(compute: Callable[[], Any]) -> Any:
    """Compute for a caller that Redis failed: the time is counted (``failopen_compute``)."""
    started = time.monotonic()
    try:
        return compute()
    finally:
        observations.observe("failopen_compute", time.monotonic() - started)


def _wait_for(store: TagStore, entry: str, wait: float, poll: float) -> Any:
    """Poll for an entry another caller is computing, for at most ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        time.sleep(poll)
        try:
            raw = store.get(entry)
        except RETRYABLE as exc:
            fail_open("read", exc)
            return MISSING
        waited = None if raw is None else serialization.loads(raw)
        if waited is not None:
            metrics.incr("stampede_waits")
            return waited[0]
    return MISSING


def _compute_and_store(
    store: TagStore,
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
            value = compute()
    except BaseException:
        if owner:
            with contextlib.suppress(*RETRYABLE):  # the lock expires on its own
                store.unlock(entry, owner)
        raise
    if stale[0]:  # built on a stale value: served, not stored
        metrics.incr("refused_writes")
        if owner:
            with contextlib.suppress(*RETRYABLE):  # the lock expires on its own
                store.unlock(entry, owner)
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
        if owner:
            with contextlib.suppress(*RETRYABLE):  # the lock expires on its own
                store.unlock(entry, owner)
        return value, False
    try:
        expected = tokens if tag_list else None
        stored = traced(
            "write",
            lambda: store.finish_miss(entry, payload, ttl, tag_list, expected, owner, fence_us),
            tags=len(tag_list),
        )
    except RETRYABLE as exc:
        fail_open("write", exc)
        return value, False
    metrics.incr("stores" if stored else "refused_writes")
    if alias:
        l1.wrote(alias, store, entry, payload if stored else None)
    return value, bool(stored)
