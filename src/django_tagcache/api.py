"""The public caching API: :data:`tagcache`, :func:`invalidate_tags` and :func:`cached`.

This is the Django adapter over :mod:`django_tagcache.store`: it reads settings, resolves tag
sources, serializes values and decides what a Redis failure means for each call. Entry reads
and writes fail open (logged and counted; the caller gets its value); invalidations never do.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable
from typing import Any, Final, cast

from django.core.cache import caches

from . import metrics
from .backends import raw_client
from .bubbling import note_tags
from .conf import conf
from .exceptions import TagCacheUnavailable
from .retry import RETRYABLE
from .scripts import ScriptRunner
from .signals import tags_invalidated
from .store import StoreOptions, TagStore
from .tags import normalize_tags

logger = logging.getLogger("django_tagcache")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT_TIMEOUT"


#: Use ``TAGCACHE['DEFAULT_TIMEOUT']``.
DEFAULT_TIMEOUT: Final = _Default()
_MISSING: Final = object()

# One store per cache alias and process: it holds the alias' client and the loaded-script
# state. Rebuilt when CACHES or TAGCACHE change (see apps.py); reset_stores() empties it.
_stores: dict[str, TagStore] = {}
_stores_lock = threading.Lock()


def get_store(alias: str | None = None) -> TagStore:
    """The :class:`~django_tagcache.store.TagStore` of a cache alias (default: ``TAGCACHE['CACHE']``)."""
    alias = alias or conf.CACHE
    store = _stores.get(alias)
    if store is None:
        with _stores_lock:
            store = _stores.get(alias)
            if store is None:
                store = _stores[alias] = _build_store(alias)
    return store


def _build_store(alias: str) -> TagStore:
    client = raw_client(alias)
    options = StoreOptions(
        key_prefix=conf.KEY_PREFIX,
        chunk_size=conf.CHUNK_SIZE,
        generation_ttl_ms=conf.GENERATION_TTL * 1000,
        prune_per_write=conf.PRUNE_PER_WRITE,
        retry=conf.RETRY,
    )
    mode = cast("Any", conf.SCRIPT_MODE)
    return TagStore(
        client, make_key=caches[alias].make_key, options=options, scripts=ScriptRunner(client, mode)
    )


def reset_stores() -> None:
    """Forget every store; the next call builds them again from the current settings."""
    with _stores_lock:
        _stores.clear()


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


def _serialize(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


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
        metrics.incr("failures")
        logger.warning(
            "django-tagcache: %s failed, Redis unreachable (%s); serving without the cache.", what, exc
        )

    def _read(self, key: str, version: int | None) -> Any:
        store = self.store
        try:
            raw = store.get(store.keys.entry(key, version))
        except RETRYABLE as exc:
            self._fail_open("read", exc)
            return _MISSING
        if raw is None:
            metrics.incr("misses")
            return _MISSING
        metrics.incr("hits")
        return pickle.loads(raw)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        """The value cached under ``key``, or ``default``. One GET."""
        value = self._read(key, version)
        return default if value is _MISSING else value

    def set(
        self,
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
            self.delete(key, version=version)
            return False
        payload = _serialize(value)
        if len(payload) > conf.MAX_ENTRY_SIZE:
            raise ValueError(
                f"Value for {key!r} is {len(payload)} bytes serialized; TAGCACHE['MAX_ENTRY_SIZE'] is "
                f"{conf.MAX_ENTRY_SIZE}."
            )
        store = self.store
        try:
            stored = store.write(store.keys.entry(key, version), payload, ttl, tag_list)
        except RETRYABLE as exc:
            self._fail_open("write", exc)
            return False
        if stored:
            metrics.incr("stores")
        return stored

    def get_or_set(
        self,
        key: str,
        default: Any,
        timeout: float | _Default | None = DEFAULT_TIMEOUT,
        tags: object = None,
        version: int | None = None,
    ) -> Any:
        """The cached value of ``key``; on a miss, compute ``default()`` (or take ``default``) and cache it.

        The write is refused, and counted, if any of ``tags`` was invalidated between the miss and
        the write: a value computed from data read before an invalidation is never stored. The
        caller gets the computed value either way. Bad tags raise before Redis is touched.
        """
        tag_list = normalize_tags(tags)
        note_tags(tag_list)
        return self._get_or_compute(key, default, timeout, lambda: tag_list, version)

    def _get_or_compute(
        self,
        key: str,
        default: Any,
        timeout: float | _Default | None,
        tags: Callable[[], object],
        version: int | None,
    ) -> Any:
        value = self._read(key, version)
        if value is not _MISSING:
            return value
        tag_list = normalize_tags(tags())
        ttl = _ttl_ms(timeout)
        store = self.store
        expected: list[str] | None = None
        if ttl is not None and tag_list:
            try:
                # Read before computing: any invalidation from now on moves a token and refuses the write.
                expected = store.generations(tag_list)
            except RETRYABLE as exc:
                self._fail_open("generation read", exc)
                ttl = None
        value = default() if callable(default) else default
        if ttl is not None:
            self._store_computed(store, key, version, value, ttl, tag_list, expected)
        return value

    def _store_computed(
        self,
        store: TagStore,
        key: str,
        version: int | None,
        value: Any,
        ttl: int,
        tag_list: tuple[str, ...],
        expected: list[str] | None,
    ) -> None:
        payload = _serialize(value)
        if len(payload) > conf.MAX_ENTRY_SIZE:
            metrics.incr("oversized")
            logger.warning(
                "django-tagcache: not caching %r: %d bytes is over MAX_ENTRY_SIZE.", key, len(payload)
            )
            return
        try:
            stored = store.write(store.keys.entry(key, version), payload, ttl, tag_list, expected)
        except RETRYABLE as exc:
            self._fail_open("write", exc)
            return
        metrics.incr("stores" if stored else "refused_writes")

    def delete(self, key: str, version: int | None = None) -> bool:
        """Delete one entry; True if it existed. Its tag indexes forget it when it would have expired."""
        store = self.store
        try:
            return store.delete(store.keys.entry(key, version))
        except RETRYABLE as exc:
            self._fail_open("delete", exc)
            return False

    def invalidate_tags(self, *tags: object, source: str | None = None) -> int:
        """Delete every entry cached under any of ``tags``; returns the number of entries removed.

        One script call for any number of tags (tags with more than ``CHUNK_SIZE`` entries are
        then drained in further short calls). When it returns, no read sees an entry written
        under those tags before the call. Raises :class:`TagCacheUnavailable` if Redis cannot be
        reached within the retry budget: an invalidation is never silently dropped.
        """
        return self.invalidate_normalized(normalize_tags(list(tags)), source=source)

    def invalidate_normalized(self, tag_list: tuple[str, ...], source: str | None = None) -> int:
        """:meth:`invalidate_tags` for tags already validated (sorted, distinct strings)."""
        if not tag_list:
            return 0
        try:
            removed = self.store.invalidate(tag_list)
        except RETRYABLE as exc:
            metrics.incr("failures")
            raise TagCacheUnavailable(f"Could not invalidate {len(tag_list)} tag(s): {exc}") from exc
        metrics.incr_many({"invalidations": 1, "tags_invalidated": len(tag_list), "entries_removed": removed})
        tags_invalidated.send(sender=TagCache, tags=tag_list, removed=removed, source=source)
        return removed


#: The cache on ``TAGCACHE['CACHE']``.
tagcache = TagCache()


def invalidate_tags(*tags: object, source: str | None = None) -> int:
    """Invalidate ``tags`` on the default tag cache; see :meth:`TagCache.invalidate_tags`."""
    return tagcache.invalidate_tags(*tags, source=source)
