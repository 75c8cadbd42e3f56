"""Site-wide page caching under tags: Django's cache middleware, storing through the tag store.

::

    MIDDLEWARE = [
        "django_tagcache.middleware.UpdateTagCacheMiddleware",
        ...
        "django_tagcache.middleware.FetchFromTagCacheMiddleware",
    ]

or the single ``django_tagcache.middleware.TagCacheMiddleware``. Everything about HTTP (which
requests and responses are cached, Vary, cookies, Cache-Control, HEAD, the cache keys, the
response headers) is Django's: these classes subclass Django's and change only where entries are
stored and under which tags. A page's tags are everything used while its view and templates
render: fragments, ``get_or_set``/``@cached`` calls and ``add_tags``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.middleware.cache import CacheMiddleware, FetchFromCacheMiddleware, UpdateCacheMiddleware

from . import cdn
from .conf import conf
from .pages import SITE, Page, PageCache, pages, writing

GetResponse = Callable[[HttpRequest], Any]
# What django-stubs says process_response takes and returns.
Response = HttpResponseBase | str


def _scoped(get_response: GetResponse, page_key: object, alias: Callable[[], str]) -> GetResponse:
    """``get_response`` (the view and everything below this middleware) run inside the page's scope.

    Django renders a TemplateResponse inside ``get_response`` when the middleware is installed
    site-wide, so this sees every tag the view and its templates use.
    """

    def begin(request: HttpRequest) -> Page | None:
        # FetchFromCacheMiddleware.process_request() has just run: True means "miss, store it".
        if not getattr(request, "_cache_update_cache", False):
            return None
        page = pages(request)[page_key] = Page(alias(), ())
        return page

    if iscoroutinefunction(get_response):

        async def scoped_async(request: HttpRequest) -> Any:
            page = begin(request)
            if page is None:
                return await get_response(request)
            with page.scope.entered():
                return await get_response(request)

        return scoped_async

    def scoped(request: HttpRequest) -> Any:
        page = begin(request)
        if page is None:
            return get_response(request)
        with page.scope.entered():
            return get_response(request)

    return scoped


def _update(
    page_key: object,
    request: HttpRequest,
    response: Response,
    process_response: Callable[[HttpRequest, Response], Response],
) -> Response:
    """Django's process_response, storing under the page's tags; adds the CDN header if configured."""
    page = pages(request).pop(page_key, None)
    if page is None:
        return process_response(request, response)
    header = conf.CDN_HEADER
    if header and isinstance(response, HttpResponseBase):
        tags = page.tags()
        if tags:
            response.headers[header] = cdn.header_value(tags, header)
    with writing(page):
        return process_response(request, response)


class UpdateTagCacheMiddleware(UpdateCacheMiddleware):
    """Django's ``UpdateCacheMiddleware``, storing pages under their tags. Put it first in MIDDLEWARE."""

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(get_response)
        self.cache_alias = conf.CACHE

    @property
    def cache(self) -> PageCache:  # type: ignore[override]
        return PageCache(self.cache_alias)

    def process_response(self, request: HttpRequest, response: Response) -> Response:
        return _update(SITE, request, response, super().process_response)


class FetchFromTagCacheMiddleware(FetchFromCacheMiddleware):
    """Django's ``FetchFromCacheMiddleware`` over tagged pages; collects the tags of what it lets through.

    Put it last in MIDDLEWARE.
    """

    def __init__(self, get_response: GetResponse) -> None:
        super().__init__(_scoped(get_response, SITE, lambda: self.cache_alias))
        self.cache_alias = conf.CACHE

    @property
    def cache(self) -> PageCache:  # type: ignore[override]
        return PageCache(self.cache_alias)


class TagCacheMiddleware(CacheMiddleware):
    """Django's ``CacheMiddleware`` (fetch and update in one) over tagged pages.

    Pages are stored in the cache alias ``TAGCACHE['CACHE']`` (``cache_alias=`` overrides it), for
    ``CACHE_MIDDLEWARE_SECONDS`` under ``CACHE_MIDDLEWARE_KEY_PREFIX``, like Django's. It is also
    what :func:`~django_tagcache.views.cache_page_tagged` is made of.
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
        alias = kwargs.pop("cache_alias", None)
        if page_key is SITE:
            get_response = _scoped(get_response, SITE, lambda: self.cache_alias)
        # else: a decorated view, which opens the page's scope itself (see views.py).
        super().__init__(get_response, cache_timeout, page_timeout, **kwargs)
        self.cache_alias = alias or conf.CACHE
        self.page_key = page_key

    @property
    def cache(self) -> PageCache:  # type: ignore[override]
        return PageCache(self.cache_alias)

    def process_response(self, request: HttpRequest, response: Response) -> Response:
        return _update(self.page_key, request, response, super().process_response)
