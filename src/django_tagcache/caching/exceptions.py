"""Exceptions raised by django-tagcache."""

from __future__ import annotations


class TagCacheError(Exception):
    """Base class of every error this package raises on purpose."""


class TagCacheUnavailable(TagCacheError):
    """Redis could not be reached within the retry budget for an operation that must not be dropped."""
