"""The Jinja2 twin of ``{% tagcache %}``: add ``django_tagcache.jinja2.TagCacheExtension`` to the
environment's extensions. The code lives in :mod:`django_tagcache.web.jinja2`.
"""

from __future__ import annotations

from .web.jinja2 import TagCacheExtension

__all__ = ["TagCacheExtension"]
