"""Rendered entries: a fragment's or page's value stored with the tags and tokens that prove it fresh.

:func:`read_entry` serves one and hands its tags and tokens to the open render scopes
(:mod:`django_tagcache.caching.scopes`); :func:`write_entry` stores one, checked against the
tokens its scope gathered while it rendered. :func:`served` and :func:`write_with` are the same
without the I/O of a read, and through a store of either transport, for asyncio callers.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from ..conf import conf
from ..core import metrics, serialization
from ..core.bridge import run_sync, settle
from ..core.retry import RETRYABLE
from . import bubbling, fences
from . import near as l1
from .failopen import fail_open
from .scopes import Scope, vouch
from .stores import get_store

logger = logging.getLogger("django_tagcache")


async def _release(store: Any, entry: str, owner: str) -> None:
    if owner:
        with contextlib.suppress(*RETRYABLE):  # else the lock expires on its own
            await settle(store.unlock(entry, owner))


def _no_tags() -> tuple[str, ...]:
    return ()


def read_entry(
    alias: str, entry: str, near: bool | None = None
) -> tuple[Any, tuple[str, ...], tuple[str, ...]] | None:
    """The (value, tags, tokens) of a rendered entry, or None on a miss: one GET (none when the near
    cache or the request cache serves it). Redis errors propagate.

    A hit hands its tags and tokens to the open collectors, so a served entry still tags the
    fragment or page it is part of.
    """
    store = get_store(alias)
    use = l1.wanted(alias, store, near, _no_tags)
    keep = None
    if use is not None:
        near_cache = use

        def keep(payload: bytes) -> bool:
            # Kept in L1 only if every tag the entry carries tolerates L1's staleness bound.
            loaded = serialization.loads_rendered(payload)
            return loaded is not None and near_cache.allows(loaded[1])

    return served(alias, entry, run_sync(l1.fetch(store, entry, use, keep)))


def served(alias: str, entry: str, raw: bytes | None) -> tuple[Any, tuple[str, ...], tuple[str, ...]] | None:
    """What :func:`read_entry` returns for the payload ``raw`` of ``entry``, read by the caller."""
    # Not written here (say, tagcache.set() on a fragment's key, or another format): a miss.
    loaded = None if raw is None else serialization.loads_rendered(raw)
    if loaded is None:
        return None
    value, tags, tokens = loaded
    if tags and bubbling.collecting():
        vouch(alias, entry, tags, tokens)
    return value, tags, tokens


def write_entry(alias: str, entry: str, value: Any, ttl_ms: int, scope: Scope, owner: str = "") -> bool:
    """Store a rendered value under the scope's tags, checked against the scope's tokens; True if stored.

    The payload carries the tags and tokens, so the entry can vouch for them when it is served
    inside another scope. A refused write is counted, never raised; so is a write that fails
    because Redis is unreachable. ``owner`` is the single-flight lock this render holds: it is
    released by the write itself, or here when nothing is written.
    """
    return run_sync(write_with(alias, get_store(alias), entry, value, ttl_ms, scope, owner))


async def write_with(
    alias: str, store: Any, entry: str, value: Any, ttl_ms: int, scope: Scope, owner: str
) -> bool:
    """:func:`write_entry` through ``store``, blocking or asyncio (see :mod:`django_tagcache.core.bridge`)."""
    tags, expected = scope.expected()
    if scope.tokens.unavailable:
        await _release(store, entry, owner)
        return False
    if expected is None:
        metrics.incr("refused_writes")
        await scope.tokens.heal_with(store)
        await _release(store, entry, owner)
        return False
    try:
        payload = serialization.dumps_rendered(value, tags, tuple(expected))
    except serialization.Unpicklable as exc:
        metrics.incr("unpicklable")
        logger.warning("django-tagcache: not caching %r: %s", entry, exc)
        await _release(store, entry, owner)
        return False
    if len(payload) > conf.MAX_ENTRY_SIZE:
        metrics.incr("oversized")
        logger.warning("django-tagcache: not caching %r: %d bytes, over MAX_ENTRY_SIZE.", entry, len(payload))
        await _release(store, entry, owner)
        return False
    try:
        # Releases the lock in the same call (one script call on a single server).
        fence_us = fences.to_us(scope.tokens.fence)
        finished = store.finish_miss(entry, payload, ttl_ms, tags, expected, owner, fence_us)
        stored = bool(await settle(finished))
    except RETRYABLE as exc:
        fail_open("write", exc)
        return False
    l1.wrote(alias, get_store(alias), entry, payload if stored else None)
    metrics.incr("stores" if stored else "refused_writes")
    if not stored:
        await scope.tokens.heal_with(store)
    return stored
