"""The HTTP and template integration: fragments, pages, cached views, the middleware, CDN
headers and the Jinja2 extension.
"""

from __future__ import annotations
