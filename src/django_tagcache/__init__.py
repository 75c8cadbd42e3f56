"""django-tagcache: tag-based cache invalidation for Django on Redis."""

from __future__ import annotations

from .api import DEFAULT_TIMEOUT, TagCache, invalidate_tags, tagcache
from .bubbling import add_tags, collect_tags
from .budget import redis_budget
from .decorators import cached
from .exceptions import TagCacheError, TagCacheUnavailable
from .fences import fence
from .orm import invalidate_model, invalidate_objects, register, tags_for
from .tags import normalize_tags, register_resolver

__all__ = [
    "DEFAULT_TIMEOUT",
    "TagCache",
    "TagCacheError",
    "TagCacheUnavailable",
    "add_tags",
    "cached",
    "collect_tags",
    "fence",
    "invalidate_model",
    "invalidate_objects",
    "invalidate_tags",
    "normalize_tags",
    "redis_budget",
    "register",
    "register_resolver",
    "tagcache",
    "tags_for",
]
