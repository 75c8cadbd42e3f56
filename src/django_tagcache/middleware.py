"""The middleware: site-wide caching under tags (:class:`TagCacheMiddleware` and its two halves,
from :mod:`django_tagcache.web.middleware`), and what gives each request its Redis time budget
and its read fence under ASGI too (:class:`RedisBudgetMiddleware` and
:class:`ReadFenceMiddleware`, from :mod:`django_tagcache.caching`).
"""

from __future__ import annotations

from .caching.budget import RedisBudgetMiddleware
from .caching.fences import ReadFenceMiddleware
from .web.middleware import FetchFromTagCacheMiddleware, TagCacheMiddleware, UpdateTagCacheMiddleware

__all__ = [
    "FetchFromTagCacheMiddleware",
    "ReadFenceMiddleware",
    "RedisBudgetMiddleware",
    "TagCacheMiddleware",
    "UpdateTagCacheMiddleware",
]
