"""Exceptions raised by django-tagcache."""

from __future__ import annotations


class TagCacheError(Exception):
    """Base class of every error this package raises on purpose."""


class TagCacheUnavailable(TagCacheError):
    """Redis could not be reached within the retry budget for an operation that must not be dropped.

    ``aliases`` names the cache aliases where it failed, when known: an invalidation that spans
    several aliases completes in the others before raising (None: every alias it was to reach).
    """

    def __init__(self, message: str, *, aliases: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.aliases = aliases
