"""Cached views: :func:`cache_page_tagged`. The code lives in :mod:`django_tagcache.web.views`."""

from __future__ import annotations

from .web.views import cache_page_tagged

__all__ = ["cache_page_tagged"]
