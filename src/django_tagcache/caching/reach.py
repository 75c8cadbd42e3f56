"""Which cache aliases an invalidation reaches, and how it reaches several of them in a safe order.

Model writes, the outbox, ``invalidate_tags()`` and the commands without ``--cache`` invalidate
every alias that may hold tagged entries (:func:`invalidated_aliases`), not only
``TAGCACHE['CACHE']``: fragments default to a ``template_fragments`` cache and pages to the
middleware's alias, as in Django, and ``using=``/``cache=`` may name any alias.

Aliases are invalidated one after another, so a page cached in an alias already invalidated could
be rendered from a fragment of one not reached yet, and stored under the new generation. To close
that window, :func:`invalidate_across` first raises a mark in every alias (the tags count as
in progress there, as while a big invalidation drains: no checked write under them is stored and
no entry read under them vouches for an outer one), then invalidates each alias, then lowers the
marks. One alias (the common case) needs none of this, and pays nothing for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.exceptions import ImproperlyConfigured

from ..backends import backend_kind
from ..conf import conf
from ..core.bridge import settle
from ..core.protections import on
from ..core.protocol import new_token
from ..core.retry import RETRYABLE
from .exceptions import TagCacheUnavailable

if TYPE_CHECKING:
    from .flows import Flow

logger = logging.getLogger("django_tagcache")

#: The alias Django's ``{% cache %}`` prefers when it has no ``using=``; so does ``{% tagcache %}``.
FRAGMENTS_ALIAS = "template_fragments"
#: Middleware that caches whole pages in ``CACHE_MIDDLEWARE_ALIAS``.
PAGE_MIDDLEWARE = (
    "django_tagcache.middleware.TagCacheMiddleware",
    "django_tagcache.middleware.UpdateTagCacheMiddleware",
    "django_tagcache.middleware.FetchFromTagCacheMiddleware",
    "django_tagcache.web.middleware.TagCacheMiddleware",
    "django_tagcache.web.middleware.UpdateTagCacheMiddleware",
    "django_tagcache.web.middleware.FetchFromTagCacheMiddleware",
)

# Computed from the settings at first use, forgotten when CACHES, TAGCACHE, MIDDLEWARE or
# CACHE_MIDDLEWARE_ALIAS change (apps.py): every model write reads it.
_found: tuple[str, ...] | None = None
_lock = threading.Lock()


def invalidated_aliases() -> tuple[str, ...]:
    """The aliases an invalidation without an alias reaches: ``TAGCACHE['CACHE']`` first.

    ``TAGCACHE['CACHES']`` lists the others; by default they are those this package caches in
    without being told: ``template_fragments`` (if in CACHES, with a supported backend) and
    ``CACHE_MIDDLEWARE_ALIAS`` (if set, with the tag cache's middleware installed). Aliases that
    name the same keys (same LOCATION, and the same key for the same name) count once.
    """
    global _found
    found = _found
    if found is None:
        with _lock:
            found = _found = _found if _found is not None else _find()
    return found


def forget() -> None:
    """Compute :func:`invalidated_aliases` again at next use (the settings changed)."""
    global _found
    with _lock:
        _found = None


def defaults() -> list[str]:
    """The aliases, besides ``TAGCACHE['CACHE']``, this package caches fragments or pages in by default."""
    found = []
    if FRAGMENTS_ALIAS in settings.CACHES and _supported(FRAGMENTS_ALIAS):
        found.append(FRAGMENTS_ALIAS)
    middleware = getattr(settings, "MIDDLEWARE", None) or ()
    # Not set, CACHE_MIDDLEWARE_ALIAS leaves the middleware on TAGCACHE['CACHE'] (middleware.py).
    if any(path in PAGE_MIDDLEWARE for path in middleware) and cast("Any", settings).is_overridden(
        "CACHE_MIDDLEWARE_ALIAS"
    ):
        pages = str(settings.CACHE_MIDDLEWARE_ALIAS)
        if pages in settings.CACHES and _supported(pages):
            found.append(pages)
    return found


def _find() -> tuple[str, ...]:
    listed = conf.CACHES
    candidates = [conf.CACHE, *(defaults() if listed is None else listed)]
    for alias in candidates:
        if alias not in settings.CACHES or not _supported(alias):
            raise ImproperlyConfigured(
                f"TAGCACHE['CACHES'] names {alias!r}, which is not a cache alias django-tagcache can "
                "invalidate (not in CACHES, or not a supported backend)."
            )
    found: dict[object, str] = {}
    for alias in candidates:
        found.setdefault(_identity(alias), alias)
    return tuple(found.values())


def _supported(alias: str) -> bool:
    try:
        return backend_kind(caches[alias]) is not None
    except (InvalidCacheBackendError, ImproperlyConfigured, ImportError):
        return False


def _identity(alias: str) -> object:
    """What tells the keys of an alias apart: its servers and how it names keys.

    Two aliases with the same LOCATION and key function, prefix and version hold the same keys,
    so invalidating one invalidates both. The in-process store keeps one keyspace per alias.
    """
    cache = caches[alias]
    if backend_kind(cache) == "locmem":
        return ("locmem", alias)
    location: Any = cast("dict[str, Any]", settings.CACHES[alias]).get("LOCATION", "")
    parts = location.split(",") if isinstance(location, str) else list(location)
    return ("redis", tuple(sorted(str(part).strip() for part in parts)), cache.make_key("tagcache"))


async def invalidate_across(
    flow: Flow,
    aliases: Sequence[str],
    tags: Sequence[str],
    invalidate: Callable[[str], Awaitable[int]],
) -> int:
    """Invalidate ``tags`` in each of ``aliases`` (``invalidate(alias)`` does one); entries removed.

    Marks are raised in every alias first and lowered once each alias is done, so that no entry
    is stored in one alias from an entry of another not yet invalidated (see the module
    docstring). An alias that cannot be reached does not stop the others: every other one is
    invalidated, then :class:`TagCacheUnavailable` names the aliases that failed.
    """
    mark = "alias:" + new_token()
    failed: dict[str, BaseException] = {}
    raised: list[str] = []
    if on("alias_marks"):
        for alias in aliases:
            try:
                await settle(flow.store(alias).mark(tags, mark, raised=True))
            except RETRYABLE as exc:
                failed[alias] = exc  # unreachable: its invalidation would fail too
            else:
                raised.append(alias)
    removed = 0
    try:
        for alias in aliases:
            if alias not in failed:
                try:
                    removed += await invalidate(alias)
                except RETRYABLE as exc:
                    failed[alias] = exc
    finally:
        for alias in raised:
            try:
                await settle(flow.store(alias).mark(tags, mark, raised=False))
            except RETRYABLE as exc:
                logger.warning(
                    "django-tagcache: could not lower the mark of an invalidation on cache %r (%s); "
                    "writes under its %d tag(s) are refused there until it expires (DRAIN_GUARD_TTL).",
                    alias,
                    exc,
                    len(tags),
                )
    if failed:
        reasons = "; ".join(f"{alias!r}: {exc}" for alias, exc in failed.items())
        raise TagCacheUnavailable(
            f"Could not invalidate {len(tags)} tag(s) on {len(failed)} of {len(aliases)} cache aliases "
            f"({reasons})",
            aliases=tuple(failed),
        )
    return removed
