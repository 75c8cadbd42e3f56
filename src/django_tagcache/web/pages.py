"""Whole responses cached under tags: the cache object and the per-request state behind the page middleware.

Django's ``CacheMiddleware`` (and ``get_cache_key``/``learn_cache_key``, which it calls) keep two
entries per page: the list of request headers the page varies on, and the response itself. The
tagged middleware gives them a :class:`PageCache` instead of a Django cache: both entries go
through the tag store, under the tags of the page being rendered and checked against its
generation tokens, so that invalidating any of those tags removes both.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

from ..caching import namespaces
from ..caching.api import _ttl_ms
from ..caching.failopen import fail_open
from ..caching.namespaces import in_namespace
from ..caching.recompute import jittered
from ..caching.rendering import read_entry, write_entry
from ..caching.scopes import Scope
from ..caching.stores import get_store
from ..conf import conf
from ..core import metrics
from ..core.retry import RETRYABLE

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger("django_tagcache")

#: Key of the site-wide page (the middleware's) in :func:`pages`; a decorated view uses its own.
SITE: Final = "site"

# Django's key of a page's header list. A page is one hit or one miss in the metrics: a hit reads
# the header list and the page; a miss stops at either.
_HEADER_LIST = "views.decorators.cache.cache_header."
# Django's key of a page's response.
_RESPONSE = "views.decorators.cache.cache_page."


class _Current:
    """The default namespace of a :class:`Page`: the one current when it is created."""


CURRENT: Final = _Current()


class Page:
    """One page being rendered for the cache: its scope (tags and tokens) and whether it can be stored.

    A page is stored in the namespace it was looked up in, ``namespace`` (default: the current
    one, when the page is created at the lookup): an inner middleware that sets the tenant for
    the request has reset it by the time the outer, updating middleware stores the page.
    """

    def __init__(
        self,
        alias: str,
        own_tags: tuple[str, ...],
        namespace: str | _Current | None = CURRENT,
        request: object = None,
    ) -> None:
        self.alias = alias
        self.namespace = namespaces.current() if isinstance(namespace, _Current) else namespace
        # The request's start bounds the page's read fence (under ASGI, the only way it can).
        self.scope = Scope(alias, request)
        with in_namespace(self.namespace):
            self.scope.begin(own_tags)
        # False while part of the page (a TemplateResponse) is still to be rendered inside the scope.
        self.complete = True
        # Why the page must not be stored, if it must not (see refuse()).
        self.refused: str | None = None
        # Whether the response itself (not only its header list) was stored.
        self.stored = False

    def tags(self) -> tuple[str, ...]:
        return tuple(sorted(self.scope))

    def refuse(self, why: str) -> None:
        """Keep the page from being stored, for the reason ``why``."""
        self.refused = why

    def write(self, key: str, version: int | None, value: Any, timeout: Any) -> None:
        if not self.complete or self.refused:
            logger.debug(
                "django-tagcache: not caching %r: %s.",
                key,
                self.refused or "rendered outside its page's scope",
            )
            return
        with in_namespace(self.namespace):
            store = get_store(self.alias)
            entry = store.keys.entry(key, version)
            ttl = _ttl_ms(timeout)
            if ttl is None:
                try:
                    store.delete(entry)
                except RETRYABLE as exc:
                    fail_open("delete", exc)
                return
            # Shortened at random like every computed entry: pages rendered together expire apart.
            stored = write_entry(self.alias, entry, value, jittered(ttl, conf.TTL_JITTER), self.scope)
        if key.startswith(_RESPONSE):
            self.stored = stored


def pages(request: HttpRequest) -> dict[object, Page | None]:
    """The pages being rendered for the cache during ``request``, by middleware or decorated view.

    None: a page that must not be stored (its tags could not be built).
    """
    found: dict[object, Page | None] = request.__dict__.setdefault("_tagcache_pages", {})
    return found


# The page whose response Django's UpdateCacheMiddleware is storing right now: PageCache.set()
# is called from inside Django's code, which only passes it a key, a value and a timeout.
_writing: ContextVar[Page | None] = ContextVar("django_tagcache_writing_page", default=None)


@contextmanager
def writing(page: Page | None) -> Iterator[None]:
    """Within the block, :meth:`PageCache.set` stores under ``page``'s tags (None: it stores nothing)."""
    token = _writing.set(page)
    try:
        yield
    finally:
        _writing.reset(token)


class PageCache:
    """The cache object Django's page caching talks to: ``get`` and ``set`` through the tag store.

    A hit is one GET per entry (a page hit is two, as with Django's own cache). Outside a
    :func:`writing` block ``set`` stores nothing: an entry whose tags are not known could never
    be invalidated.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def __repr__(self) -> str:
        return f"PageCache({self.alias!r})"

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        entry = get_store(self.alias).keys.entry(key, version)
        try:
            hit = read_entry(self.alias, entry)
        except RETRYABLE as exc:
            fail_open("read", exc)
            return default
        if hit is None:
            metrics.incr("misses")
            return default
        if not key.startswith(_HEADER_LIST):
            metrics.incr("hits")
        return hit[0]

    def set(self, key: str, value: Any, timeout: Any = None, version: int | None = None) -> None:
        page = _writing.get()
        if page is None:
            logger.debug("django-tagcache: not caching %r outside a tagged page.", key)
            return
        page.write(key, version, value, timeout)

    def delete(self, key: str, version: int | None = None) -> bool:
        store = get_store(self.alias)
        try:
            return store.delete(store.keys.entry(key, version))
        except RETRYABLE as exc:
            fail_open("delete", exc)
            return False
