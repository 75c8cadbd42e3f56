"""``cache_page_tagged``: Django's ``cache_page``, with the page stored under tags."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction
from django.template.response import SimpleTemplateResponse
from django.utils.decorators import decorator_from_middleware_with_args

from ..caching.tags import normalize_tags
from ..conf import conf
from .middleware import TagCacheMiddleware
from .pages import CURRENT, Page, pages

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

logger = logging.getLogger("django_tagcache")

V = TypeVar("V", bound=Callable[..., Any])


def cache_page_tagged(
    timeout: float | None,
    *,
    tags: object = None,
    cache: str | None = None,
    key_prefix: str | None = None,
) -> Callable[[V], V]:
    """Cache a view's responses like Django's ``cache_page``, under tags.

    HTTP semantics are Django's own (``cache_page`` is built on the same middleware): GET and
    HEAD only, Vary, cookies, Cache-Control and ``timeout`` behave exactly as there. The page's
    tags are ``tags`` (tag sources, or a callable taking the view's ``request, *args, **kwargs``
    and returning them, called on a miss only) plus everything the view and its templates use:
    ``{% tagcache %}`` fragments, ``get_or_set``/``@cached`` calls and ``add_tags``.
    Invalidating any of them removes the page. A page whose tags were invalidated while it
    rendered is not stored. ``cache`` names the cache alias (default ``TAGCACHE['CACHE']``). A
    hit costs two GETs, as with ``cache_page``. On an ``async def`` view it returns a coroutine
    function whose cache reads and writes are awaited on the event loop (docs/async.md).
    """

    def decorator(view: V) -> V:
        page_key = _PageKey(view)
        options: dict[str, Any] = {
            "page_timeout": timeout,
            "cache_alias": cache,
            "key_prefix": key_prefix,
            "page_key": page_key,
        }
        scoped = _scoped_view(view, page_key, tags, cache)
        if iscoroutinefunction(view):
            return cast("V", _native(TagCacheMiddleware(scoped, **options), scoped))
        return cast("V", decorator_from_middleware_with_args(TagCacheMiddleware)(**options)(scoped))

    return decorator


def _native(middleware: TagCacheMiddleware, scoped: Callable[..., Any]) -> Callable[..., Any]:
    """An ``async def`` view under the middleware, as Django's middleware decorators apply it, with
    the cache I/O awaited on the event loop (Django's own decorator would block the loop on it).

    A response still to be rendered (a TemplateResponse) is stored once Django has rendered it,
    as Django's decorator does: then from the thread Django renders it in, where the fragments
    inside it are read and written too.
    """

    async def cached_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        found = await middleware.aprocess_request(request)
        if found is not None:
            return found
        middleware.process_view(request, scoped, args, kwargs)  # refuses the page, never answers
        response = await scoped(request, *args, **kwargs)
        if callable(getattr(response, "render", None)):
            response.add_post_render_callback(lambda rendered: middleware.process_response(request, rendered))
            return response
        return await middleware.aprocess_response(request, response)

    return functools.wraps(scoped)(cached_view)


class _PageKey:
    """Links one decorated view to its middleware: the key of its page in the request's pages."""

    def __init__(self, view: Callable[..., Any]) -> None:
        self.view = getattr(view, "__qualname__", repr(view))
        self.warned = False  # whether a bad tag of this view was logged at WARNING already

    def __repr__(self) -> str:
        return f"<page of {self.view}>"


def _scoped_view(view: V, page_key: _PageKey, tags: object, alias: str | None) -> V:
    """``view``, run inside its page's scope on a miss (and its TemplateResponse rendered inside it)."""

    def begin(request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Page | None:
        # The middleware's process_request() has just run: True means "miss, store it".
        if not getattr(request, "_cache_update_cache", False):
            return None
        looked_up = pages(request).get(page_key)  # opened by the middleware's lookup
        own = tags(request, *args, **kwargs) if callable(tags) else tags
        try:
            own_tags = normalize_tags(own)
        except (TypeError, ValueError) as exc:
            # Tags built from the URL (a slug with a space, 300 characters): the page is
            # served, uncached, rather than a 500 anyone can provoke.
            _warn_once(page_key, exc)
            pages(request)[page_key] = None
            return None
        namespace = looked_up.namespace if looked_up is not None else CURRENT
        page = pages(request)[page_key] = Page(alias or conf.CACHE, own_tags, namespace, request)
        return page  # to begin() before the view runs

    if iscoroutinefunction(view):

        async def scoped_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            page = begin(request, args, kwargs)
            if page is None:
                return await view(request, *args, **kwargs)
            await page.abegin()
            with page.entered():
                response = await view(request, *args, **kwargs)
            return _render_later_in_scope(page, response)

        return functools.wraps(view)(scoped_async)  # type: ignore[return-value]

    def scoped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        page = begin(request, args, kwargs)
        if page is None:
            return view(request, *args, **kwargs)
        page.begin()
        with page.entered():
            response = view(request, *args, **kwargs)
        return _render_later_in_scope(page, response)

    return functools.wraps(view)(scoped)  # type: ignore[return-value]


def _warn_once(page_key: _PageKey, exc: Exception) -> None:
    """Log the first bad tag of a view at WARNING, later ones at DEBUG: input from the URL can repeat."""
    level = logging.DEBUG if page_key.warned else logging.WARNING
    page_key.warned = True
    logger.log(
        level,
        "django-tagcache: %s: the tags= of its page gave a value that is not a valid tag (%s); "
        "serving it uncached.",
        page_key.view,
        exc,
    )


def _render_later_in_scope(page: Page, response: HttpResponseBase) -> HttpResponseBase:
    """Make a TemplateResponse, which Django renders after the view returns, render inside the scope."""
    if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
        page.complete = False
        # template_name may be a template object: that is how the render is brought into the scope.
        response.template_name = _ScopedTemplate(response, page)
    elif callable(getattr(response, "render", None)) and not getattr(response, "is_rendered", True):
        logger.warning("django-tagcache: %s renders outside the page's scope; not cached.", type(response))
        page.complete = False
    return response


class _ScopedTemplate:
    """A TemplateResponse's template, rendered inside the page's scope."""

    def __init__(self, response: SimpleTemplateResponse, page: Page) -> None:
        self.template_name = response.template_name
        self._resolve = response.resolve_template
        self._page = page

    def __repr__(self) -> str:
        return f"<{self.template_name!r} rendered for the tag cache>"

    def render(self, context: Any = None, request: HttpRequest | None = None) -> str:
        template = self._resolve(self.template_name)
        with self._page.entered():
            content: str = template.render(context, request)
        self._page.complete = True
        return content
