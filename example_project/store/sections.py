"""Site-wide page caching for some sections of the site only.

Django's cache middleware, and so :class:`django_tagcache.middleware.TagCacheMiddleware`, caches
every cacheable GET that reaches it, and Django has no per-path middleware. This one builds a
``TagCacheMiddleware`` over the rest of the chain and sends it only the requests whose path
starts with one of ``settings.CACHED_SECTIONS``; the others go straight on. Everything else about
the page cache (keys, Vary, cookies, ``CACHE_MIDDLEWARE_SECONDS``) is the tagged middleware's,
which is Django's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from django.conf import settings

from django_tagcache.middleware import TagCacheMiddleware

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase


class SectionCacheMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.cached = TagCacheMiddleware(get_response)
        self.prefixes = tuple(settings.CACHED_SECTIONS)

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.prefixes):
            # A synchronous chain (WSGI): Django's middleware returns the response itself.
            return cast("HttpResponseBase", self.cached(request))
        return self.get_response(request)
