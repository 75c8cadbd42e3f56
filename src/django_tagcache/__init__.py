"""django-tagcache: tag-based cache invalidation for Django on Redis."""

from __future__ import annotations

from .caching.api import DEFAULT_TIMEOUT, TagCache, ainvalidate_tags, invalidate_tags, tagcache
from .caching.bubbling import add_tags, collect_tags
from .caching.budget import redis_budget
from .caching.decorators import cached
from .caching.exceptions import TagCacheError, TagCacheUnavailable
from .caching.fences import fence
from .caching.scopes import aadd_tags
from .caching.tags import normalize_tags, register_resolver
from .orm.api import (
    ainvalidate_model,
    ainvalidate_objects,
    invalidate_model,
    invalidate_objects,
    register,
    tags_for,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "TagCache",
    "TagCacheError",
    "TagCacheUnavailable",
    "aadd_tags",
    "add_tags",
    "ainvalidate_model",
    "ainvalidate_objects",
    "ainvalidate_tags",
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
