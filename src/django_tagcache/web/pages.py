"""Whole responses cached under tags: the cache object and the per-request state behind the page middleware.

Django's ``CacheMiddleware`` (and ``get_cache_key``/``learn_cache_key``, which it calls) keep two
entries per page: the list of request headers the page varies on, and the response itself. The
tagged middleware gives them a :class:`PageCache` instead of a Django cache: both entries go
through the tag store, under the tags of the page being rendered and checked against its
generation tokens, so that invalidating any of those tags removes both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..caching import fences, namespaces
from ..caching.api import _ttl_ms
from ..caching.failopen import fail_open
from ..caching.namespaces import in_namespace
from ..caching.recompute import jittered
from ..caching.rendering import read_entry, served, write_with
from ..caching.scopes import Scope
from ..caching.stores import get_async_store, get_store
from ..conf import conf
from ..core import metrics
from ..core.bridge import settle
from ..core.retry import RETRYABLE

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger("django_tagcache")

T = TypeVar("T")

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
        self.started = fences.of_request(request)
        self.own_tags = own_tags
        # False while part of the page (a TemplateResponse) is still to be rendered inside the scope.
        self.complete = True
        # Why the page must not be stored, if it must not (see refuse()).
        self.refused: str | None = None
        # Whether the response itself (not only its header list) was stored.
        self.stored = False

    def begin(self) -> Page:
        """Note the page's own tags, reading their tokens now: before the view reads any data."""
        with in_namespace(self.namespace):
            self.scope.begin(self.own_tags)
        return self

    async def abegin(self) -> Page:
        """:meth:`begin`, with the tokens read on the event loop's own connection."""
        with in_namespace(self.namespace):
            await self.scope.tokens.aread(self.own_tags)
            self.scope.begin(self.own_tags)  # the tokens are known now: no I/O left
        return self

    @contextmanager
    def entered(self) -> Iterator[Scope]:
        """Render part of the page: its scope collects the tags, and the request's start (stamped
        on its ASGI scope) is the read fence of every value cached inside, as under WSGI.

        Under ASGI Django's ``request_started`` cannot open that fence where the view runs; the
        page can, for what renders inside it. An enclosing fence (``ReadFenceMiddleware``) is
        merged with it: the earliest wins.
        """
        with self.scope.entered() as scope:
            if self.started is None:
                yield scope
                return
            with fences.fence(self.started):
                yield scope

    def tags(self) -> tuple[str, ...]:
        return tuple(sorted(self.scope))

    def refuse(self, why: str) -> None:
        """Keep the page from being stored, for the reason ``why``."""
        self.refused = why

    async def write(self, key: str, version: int | None, value: Any, timeout: Any, *, io: Any) -> None:
        """Store one of Django's entries of the page (the header list, the response) through ``io``:
        the alias' blocking store or its asyncio one (see :mod:`django_tagcache.core.bridge`)."""
        if not self.complete or self.refused:
            logger.debug(
                "django-tagcache: not caching %r: %s.",
                key,
                self.refused or "rendered outside its page's scope",
            )
            return
        with in_namespace(self.namespace):
            entry = get_store(self.alias).keys.entry(key, version)
            ttl = _ttl_ms(timeout)
            if ttl is None:
                try:
                    await settle(io.delete(entry))
                except RETRYABLE as exc:
                    fail_open("delete", exc)
                return
            # Shortened at random like every computed entry: pages rendered together expire apart.
            stored = await write_with(
                self.alias, io, entry, value, jittered(ttl, conf.TTL_JITTER), self.scope, ""
            )
        if key.startswith(_RESPONSE):
            self.stored = stored


def pages(request: HttpRequest) -> dict[object, Page | None]:
    """The pages being rendered for the cache during ``request``, by middleware or decorated view.

    None: a page that must not be stored (its tags could not be built).
    """
    found: dict[object, Page | None] = request.__dict__.setdefault("_tagcache_pages", {})
    return found


# The page whose response Django's UpdateCacheMiddleware is storing right now, and the writes it
# asked for: PageCache.set() is called from inside Django's code, which only passes it a key, a
# value and a timeout. The caller of Django's code makes the writes once it returns, through
# the transport it runs on.
_writing: ContextVar[tuple[Page, list[Write]] | None] = ContextVar(
    "django_tagcache_writing_page", default=None
)
#: The arguments of one PageCache.set(): key, version, value, timeout.
Write = tuple[str, "int | None", Any, Any]


@contextmanager
def writing(page: Page | None) -> Iterator[list[Write]]:
    """Within the block, :meth:`PageCache.set` records writes under ``page``'s tags, into the
    yielded list, for the caller to make (with None it records nothing: nothing is stored)."""
    writes: list[Write] = []
    token = _writing.set(None if page is None else (page, writes))
    try:
        yield writes
    finally:
        _writing.reset(token)


# While an asyncio caller runs Django's (blocking) lookup, PageCache.get() serves the entries the
# caller has read for it, and asks for any other by raising _Unread; see fetch().
_prefetched: ContextVar[_Prefetched | None] = ContextVar("django_tagcache_prefetched", default=None)


class _Unread(Exception):
    """PageCache.get() needs an entry the asyncio caller has not read yet."""

    def __init__(self, entry: str, header_list: bool = False) -> None:
        super().__init__(entry)
        self.entry = entry
        self.header_list = header_list  # the entry is a page's header list (Django reads it first)


# The payload of each page's header list that this process read last, by (alias, entry): an
# asyncio lookup first runs Django's code on it, to learn which page it will then ask for, and
# reads both in one round trip. Only a guess: the lookup that decides is served what Redis
# returned, so a list changed since costs one more read, never a wrong page. Process-wide (any
# loop may use any guess), bounded, emptied when full.
_header_lists: dict[tuple[str, str], bytes] = {}
_HEADER_LISTS_MAX = 10_000


def _remember(alias: str, entry: str, raw: object) -> None:
    if not isinstance(raw, bytes):  # absent, or the read failed: nothing to guess from
        _header_lists.pop((alias, entry), None)
        return
    if len(_header_lists) >= _HEADER_LISTS_MAX:
        _header_lists.clear()
    _header_lists[alias, entry] = raw


def _guess(alias: str, entry: str, lookup: Callable[[], Any]) -> str | None:
    """The page entry ``lookup`` would ask for next if the header list ``entry`` still held
    the payload read last (its run stops at that read, as every lookup run here does)."""
    known = _header_lists.get((alias, entry))
    if known is None:
        return None
    guessing = _Prefetched()
    guessing.raw[entry] = known
    token = _prefetched.set(guessing)
    try:
        lookup()
    except _Unread as unread:
        return None if unread.entry == entry else unread.entry
    finally:
        _prefetched.reset(token)
    return None


class _Prefetched:
    """Entries read by an asyncio caller for one lookup: raw payloads, then what get() made of them."""

    #: A read that failed (Redis unreachable): get() serves the default.
    FAILED: Final = object()

    def __init__(self) -> None:
        self.raw: dict[str, bytes | object | None] = {}
        self.served: dict[str, Any] = {}


async def fetch(alias: str, lookup: Callable[[], T]) -> T:
    """Run Django's page lookup ``lookup`` (blocking code) with its entries read on the event loop.

    Django's lookup reads the page's header list, then the page, through :class:`PageCache`;
    here each read it asks for stops it, the entry is read on the loop's own connection, and the
    lookup runs again from the start, now served that entry from memory. The lookup is pure but
    for its reads (it sets flags on the request, the same each time), so its last run decides as
    the blocking one would have, and no thread is involved.

    The page Django will ask for depends on the header list's payload; when this process has
    read that list before, the lookup runs once on the payload it read then, stops at the page
    it asks for, and both entries are read in one round trip (an MGET). A hit then costs one
    round trip and two runs of the lookup; if the list has changed since, the lookup asks for
    another page, read as before.
    """
    prefetched = _Prefetched()
    token = _prefetched.set(prefetched)
    try:
        while True:
            try:
                return lookup()
            except _Unread as unread:
                entries = [unread.entry]
                if unread.header_list:
                    guess = _guess(alias, unread.entry, lookup)
                    if guess is not None and guess not in prefetched.raw:
                        entries.append(guess)
                store = get_async_store(alias)
                try:
                    if len(entries) == 1:
                        payloads = [await store.get(unread.entry)]
                    else:
                        payloads = await store.get_many(entries)
                except RETRYABLE as exc:
                    fail_open("read", exc)
                    prefetched.raw[unread.entry] = _Prefetched.FAILED  # the guess stays unread
                else:
                    prefetched.raw.update(zip(entries, payloads, strict=True))
                if unread.header_list:
                    _remember(alias, unread.entry, prefetched.raw[unread.entry])
    finally:
        _prefetched.reset(token)


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
        prefetched = _prefetched.get()
        if prefetched is not None:  # inside fetch(): the asyncio caller reads the entry
            if entry in prefetched.served:
                return prefetched.served[entry]
            if entry not in prefetched.raw:
                raise _Unread(entry, key.startswith(_HEADER_LIST))
            raw = prefetched.raw[entry]
            failed = raw is _Prefetched.FAILED
            value = self._value(key, None if failed else served(self.alias, entry, raw), default)  # type: ignore[arg-type]
            prefetched.served[entry] = value
            return value
        try:
            hit = read_entry(self.alias, entry)
        except RETRYABLE as exc:
            fail_open("read", exc)
            return default
        return self._value(key, hit, default)

    def _value(self, key: str, hit: tuple[Any, ...] | None, default: Any) -> Any:
        if hit is None:
            metrics.incr("misses")
            return default
        if not key.startswith(_HEADER_LIST):
            metrics.incr("hits")
        return hit[0]

    def set(self, key: str, value: Any, timeout: Any = None, version: int | None = None) -> None:
        current = _writing.get()
        if current is None:
            logger.debug("django-tagcache: not caching %r outside a tagged page.", key)
            return
        current[1].append((key, version, value, timeout))

    def delete(self, key: str, version: int | None = None) -> bool:
        store = get_store(self.alias)
        try:
            return store.delete(store.keys.entry(key, version))
        except RETRYABLE as exc:
            fail_open("delete", exc)
            return False
