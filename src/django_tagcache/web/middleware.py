"""Site-wide page caching under tags: Django's cache middleware, storing through the tag store.

::

    MIDDLEWARE = [
        "django_tagcache.middleware.UpdateTagCacheMiddleware",
        ...
        "django_tagcache.middleware.FetchFromTagCacheMiddleware",
    ]

or the single ``django_tagcache.middleware.TagCacheMiddleware``. A middleware that sets the
namespace (``TAGCACHE['NAMESPACE']``, say the tenant) must come before the fetching one, so that a
page is looked up in its namespace; it is then stored there too, even though the updating
middleware stores it after the inner ones have returned. Everything about HTTP (which
requests and responses are cached, Vary, cookies, Cache-Control, HEAD, the cache keys, the
response headers) is Django's: these classes subclass Django's and change only where entries are
stored and under which tags. A page's tags are everything used while its view and templates
render: fragments, ``get_or_set``/``@cached`` calls and ``add_tags``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, cast

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.cache import CacheMiddleware, FetchFromCacheMiddleware, UpdateCacheMiddleware

from ..backends import backend_kind
from ..caching import namespaces
from ..caching.stores import get_async_store, get_store
from ..conf import conf
from ..core.bridge import run_sync
from . import cdn
from .pages import SITE, Page, PageCache, fetch, pages, writing

logger = logging.getLogger("django_tagcache")

GetResponse = Callable[[HttpRequest], Any]
# What django-stubs says process_response takes and returns.
Response = HttpResponseBase | str
_ABSENT: Final = object()


def middleware_alias(given: object = _ABSENT) -> str:
    """The cache alias pages go to: ``cache_alias=`` if passed (None: ``TAGCACHE['CACHE']``), else
    ``CACHE_MIDDLEWARE_ALIAS`` if the settings set it, else ``TAGCACHE['CACHE']``.

    An alias taken from ``CACHE_MIDDLEWARE_ALIAS`` that cannot hold tagged pages is an error now,
    not at the first request.
    """
    if given is not _ABSENT:
        return str(given) if given else conf.CACHE
    # is_overridden() is public (documented with override_settings); django-stubs lacks it.
    if not cast("Any", settings).is_overridden("CACHE_MIDDLEWARE_ALIAS"):
        return conf.CACHE
    alias = str(settings.CACHE_MIDDLEWARE_ALIAS)
    try:
        supported = backend_kind(caches[alias]) is not None
    except InvalidCacheBackendError as exc:
        raise ImproperlyConfigured(f"CACHE_MIDDLEWARE_ALIAS is {alias!r}, which is not in CACHES.") from exc
    if not supported:
        raise ImproperlyConfigured(
            f"CACHE_MIDDLEWARE_ALIAS is {alias!r}, whose backend django-tagcache cannot store tagged "
            "pages in; point it at a supported Redis cache, or remove it to use TAGCACHE['CACHE']."
        )
    return alias


def _looked_up(request: HttpRequest, page_key: object, alias: str) -> None:
    """After a lookup that missed, open the page: in the namespace it was looked up in."""
    if getattr(request, "_cache_update_cache", False) and page_key not in pages(request):
        pages(request)[page_key] = Page(alias, (), request=request).begin()  # no tags: no I/O


def _scoped(get_response: GetResponse, page_key: object, alias: Callable[[], str]) -> GetResponse:
    """``get_response`` (the view and everything below this middleware) run inside the page's scope.

    Django renders a TemplateResponse inside ``get_response`` when the middleware is installed
    site-wide, so this sees every tag the view and its templates use.
    """

    def begin(request: HttpRequest) -> Page | None:
        # FetchFromCacheMiddleware.process_request() has just run: True means "miss, store it".
        if not getattr(request, "_cache_update_cache", False):
            return None
        _looked_up(request, page_key, alias())
        page: Page | None = pages(request)[page_key]
        return page

    if iscoroutinefunction(get_response):

        async def scoped_async(request: HttpRequest) -> Any:
            page = begin(request)
            if page is None:
                return await get_response(request)
            with page.entered():
                return await get_response(request)

        return scoped_async

    def scoped(request: HttpRequest) -> Any:
        page = begin(request)
        if page is None:
            return get_response(request)
        with page.entered():
            return get_response(request)

    return scoped


class _Checked:
    """The namespace check of the fetching middleware, in process_view (after every request phase)."""

    page_key: object = SITE
    _warned = False

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        page = pages(request).get(self.page_key)
        if page is None or page.namespace == (current := namespaces.current()):
            return
        # Looked up in one namespace, rendered in another: stored, it would be served in the first.
        page.refuse(f"looked up in namespace {page.namespace!r}, rendered in {current!r}")
        logger.log(
            logging.DEBUG if self._warned else logging.WARNING,
            "django-tagcache: the namespace changed between the page lookup and the view (%r, then "
            "%r): not caching the page. Put the middleware that sets the namespace before the "
            "fetching cache middleware.",
            page.namespace,
            current,
        )
        self._warned = True


def _update(
    page_key: object,
    request: HttpRequest,
    response: Response,
    process_response: Callable[[HttpRequest, Response], Response],
) -> Response:
    """Django's process_response, storing under the page's tags; adds the CDN header if stored."""
    return run_sync(_update_with(page_key, request, response, process_response, asynchronous=False))


async def _update_with(
    page_key: object,
    request: HttpRequest,
    response: Response,
    process_response: Callable[[HttpRequest, Response], Response],
    *,
    asynchronous: bool,
) -> Response:
    """:func:`_update`, storing through the alias' blocking store or, if ``asynchronous``, its
    asyncio one (see :mod:`django_tagcache.core.bridge`). Django's code only decides what to store."""
    page = pages(request).pop(page_key, _ABSENT)
    if page is _ABSENT and getattr(request, "_cache_update_cache", False):
        logger.warning(
            "django-tagcache: no tagged page was looked up for %s (the fetching half is not "
            "django-tagcache's, or process_request() was not called): not caching it.",
            request.path,
        )
    if not isinstance(page, Page):  # absent, or refused by the view (see views.py)
        with writing(None):
            return process_response(request, response)
    header = conf.CDN_HEADER
    tags = page.tags() if header and isinstance(response, HttpResponseBase) else ()
    previous = response.headers.get(header) if tags and header else None  # type: ignore[union-attr]
    if tags and header:
        response.headers[header] = cdn.header_value(tags, header, page.namespace)  # type: ignore[union-attr]
    with writing(page) as writes:
        result = process_response(request, response)
    io = get_async_store(page.alias) if asynchronous else get_store(page.alias)
    for key, version, value, timeout in writes:
        await page.write(key, version, value, timeout, io=io)
    if tags and header and not page.stored:
        # Only a stored page is a shared one: the tags of any other must not reach a CDN or browser.
        del response.headers[header]  # type: ignore[union-attr]
        if previous is not None:
            response.headers[header] = previous  # type: ignore[union-attr]
    return result


class _Native:
    """The asyncio path of Django's cache middleware: the same methods, with the cache I/O on the loop.

    Django's ``MiddlewareMixin`` runs ``process_request``/``process_response`` in a thread under
    ASGI; here they run on the event loop, their reads and writes awaited on the loop's own
    Redis connection (see :func:`~django_tagcache.web.pages.fetch` and :func:`_update_with`).
    """

    sync_capable = True
    async_capable = True
    get_response: Callable[[HttpRequest], Any]

    async def __acall__(self, request: HttpRequest) -> Any:
        response = None
        if hasattr(self, "aprocess_request"):
            response = await self.aprocess_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "aprocess_response"):
            response = await self.aprocess_response(request, response)
        return response


class UpdateTagCacheMiddleware(_Native, UpdateCacheMiddleware):
    """Django's ``UpdateCacheMiddleware``, storing pages under their tags. Put it first in MIDDLEWARE."""

    def __init__(self, get_response: GetResponse) -> None:
        # In a MIDDLEWARE chain nothing has decided "miss, store it" yet when this half is
        # entered, so the wrapper does nothing and the fetching half opens the page at its
        # lookup. Driven alone around a view with that decision already taken (Django's own
        # tests set request._cache_update_cache by hand), it opens the page itself.
        super().__init__(_scoped(get_response, SITE, lambda: self.cache_alias))
        self.cache_alias = middleware_alias()

    @property
    def cache(self) -> PageCache:  # type: ignore[override]
        return PageCache(self.cache_alias)

    def process_response(self, request: HttpRequest, response: Response) -> Response:
        return _update(SITE, request, response, super().process_response)

    async def aprocess_response(self, request: HttpRequest, response: Response) -> Response:
        """:meth:`process_response` under ASGI: the writes awaited on the event loop."""
        return await _update_with(SITE, request, response, super().process_response, asynchronous=True)


class FetchFromTagCacheMiddleware(_Native, _Checked, FetchFromCacheMiddleware):
    """Django's ``FetchFromCacheMiddleware`` over tagged pages; collects the tags of what it lets through.

    Put it last in MIDDLEWARE, after any middleware that sets the namespace.
    """

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(_scoped(get_response, SITE, lambda: self.cache_alias))
        self.cache_alias = middleware_alias()

    @property
    def cache(self) -> PageCache:  # type: ignore[override]
        return PageCache(self.cache_alias)

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        response = super().process_request(request)
        _looked_up(request, SITE, self.cache_alias)
        return response

    async def aprocess_request(self, request: HttpRequest) -> HttpResponse | None:
        """:meth:`process_request` under ASGI: the reads awaited on the event loop."""
        return await fetch(self.cache_alias, lambda: self.process_request(request))


class TagCacheMiddleware(_Native, _Checked, CacheMiddleware):
    """Django's ``CacheMiddleware`` (fetch and update in one) over tagged pages.

    Pages are stored in the cache alias ``cache_alias=`` (None: ``TAGCACHE['CACHE']``), else
    ``CACHE_MIDDLEWARE_ALIAS`` if the settings set it, else ``TAGCACHE['CACHE']``; for
    ``CACHE_MIDDLEWARE_SECONDS`` under ``CACHE_MIDDLEWARE_KEY_PREFIX``, like Django's. It is also
    what :func:`~django_tagcache.views.cache_page_tagged` is made of, and it may be driven as
    Django drives ``CacheMiddleware``: ``decorator_from_middleware_with_args``, or
    ``process_request``/``process_response`` by hand (the page then has the tags of nothing but
    what ran inside its scope: none, unless the view is decorated).
    """

    def __init__(
        self,
        get_response: GetResponse,
        cache_timeout: float | None = None,
        page_timeout: float | None = None,
        *,
        page_key: object = SITE,
        **kwargs: Any,
    ) -> None:
        alias = kwargs.pop("cache_alias", _ABSENT)
        if page_key is SITE:
            get_response = _scoped(get_response, SITE, lambda: self.cache_alias)
        # else: a decorated view, which opens the page's scope itself (see views.py).
        super().__init__(get_response, cache_timeout, page_timeout, **kwargs)
        self.cache_alias = middleware_alias(alias)
        self.page_key = page_key

    @property
    def cache(self) -> PageCache:  # type: ignore[override]
        return PageCache(self.cache_alias)

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        response = super().process_request(request)
        _looked_up(request, self.page_key, self.cache_alias)
        return response

    def process_response(self, request: HttpRequest, response: Response) -> Response:
        return _update(self.page_key, request, response, super().process_response)

    async def aprocess_request(self, request: HttpRequest) -> HttpResponse | None:
        """:meth:`process_request` under ASGI: the reads awaited on the event loop."""
        return await fetch(self.cache_alias, lambda: self.process_request(request))

    async def aprocess_response(self, request: HttpRequest, response: Response) -> Response:
        """:meth:`process_response` under ASGI: the writes awaited on the event loop."""
        return await _update_with(
            self.page_key, request, response, super().process_response, asynchronous=True
        )
