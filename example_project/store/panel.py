"""The tag-cache panel at the foot of every page: what the cache did while serving this request.

Built from django-tagcache's public hooks only:

- :func:`~django_tagcache.collect_tags`, opened around the whole request, receives the tags of
  every cached page, fragment and value the response was made of: a hit hands over the tags
  stored with its entry, a miss those it is computed and stored under;
- :func:`django_tagcache.core.metrics.snapshot` before and after the request gives its hits, misses
  and stores. The counters are per process, so the numbers are exact only while requests do not
  overlap: fine for one visitor on the dev server, and the panel says so;
- the :data:`~django_tagcache.signals.tags_invalidated` signal: what this request invalidated, and
  a short log of the latest invalidations in this process. An admin save answers with a redirect
  and its own panel is never seen, so what a redirecting request invalidated is shown on the page
  it redirected to.

A cached page must not contain its panel (it would show the request that stored it), so
templates print only a placeholder, which :func:`panel_placeholder` puts in every template's
context, and :class:`PanelMiddleware`, outside every cache, replaces it on the way out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.utils.safestring import SafeString, mark_safe

from django_tagcache import collect_tags
from django_tagcache.core import metrics

PLACEHOLDER = "<!-- tagcache-panel -->"

#: Counters the panel shows, in this order.
SHOWN = ("hits", "misses", "stores", "refused_writes", "invalidations", "entries_removed")
#: Tags shown per invalidation in the "Recently" list.
RECENT_TAGS = 12


@dataclass(frozen=True)
class Invalidation:
    at: float
    tags: tuple[str, ...]
    removed: int
    source: str | None


# The latest invalidations of this process, newest first: the panel's memory across the redirect
# that follows an admin save. Process-global on purpose, and bounded.
_recent: deque[Invalidation] = deque(maxlen=5)
# The invalidations of the request being served in this thread (None outside a request).
_during: ContextVar[list[Invalidation] | None] = ContextVar("store_panel_invalidations", default=None)
# What a request that answered with a redirect invalidated, by the path it redirected to: an admin
# save's own panel is never seen, so the page it leads to shows it. Bounded, process-global.
_carried: dict[str, list[Invalidation]] = {}
CARRIED_MAX = 20


def record_invalidation(
    sender: object, *, tags: tuple[str, ...], removed: int, source: str | None, **kwargs: Any
) -> None:
    """Receiver of ``tags_invalidated`` (connected in ``ShopConfig.ready()``)."""
    invalidation = Invalidation(time.time(), tuple(tags), removed, source)
    _recent.appendleft(invalidation)
    during = _during.get()
    if during is not None:
        during.append(invalidation)


def panel_placeholder(request: HttpRequest) -> dict[str, SafeString]:
    """Context processor: ``{{ tagcache_panel }}`` marks where the panel goes."""
    return {"tagcache_panel": mark_safe(PLACEHOLDER)}


class PanelMiddleware:
    """Collects what the tag cache did during each request and fills the panel in. Put it first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        before = metrics.snapshot()
        invalidated: list[Invalidation] = []
        token = _during.set(invalidated)
        try:
            with collect_tags() as used:
                response = self.get_response(request)
        finally:
            _during.reset(token)
        after = metrics.snapshot()
        counts = {name: after[name] - before[name] for name in SHOWN}
        carried = _carried.pop(request.path, [])
        if invalidated and 300 <= response.status_code < 400 and response.has_header("Location"):
            if len(_carried) >= CARRIED_MAX:
                _carried.pop(next(iter(_carried)))
            _carried[urlsplit(response["Location"]).path] = invalidated
        return fill_in(response, panel_context(counts, used, invalidated, carried))


def panel_context(
    counts: dict[str, int],
    used: set[str],
    invalidated: list[Invalidation],
    carried: Sequence[Invalidation] = (),
) -> dict[str, Any]:
    now = time.time()
    tags = sorted(used)
    return {
        "counts": [(name.replace("_", " "), counts[name]) for name in SHOWN],
        "read": tags,
        # A stored page carries every tag of what it contains (tags bubble up), so when something
        # was stored, it was stored under these tags.
        "written": tags if counts["stores"] else [],
        "invalidated": sorted({tag for item in invalidated for tag in item.tags}),
        "removed": sum(item.removed for item in invalidated),
        # What the request that redirected here invalidated (an admin save, a purge).
        "carried": sorted({tag for item in carried for tag in item.tags}),
        "carried_removed": sum(item.removed for item in carried),
        "recent": [
            {
                "age": round(now - item.at),
                "source": item.source,
                "removed": item.removed,
                # A demo-data load invalidates dozens of tags: the first few say enough.
                "tags": item.tags[:RECENT_TAGS],
                "more": max(0, len(item.tags) - RECENT_TAGS),
            }
            for item in _recent
        ],
    }


def fill_in(response: HttpResponseBase, context: dict[str, Any]) -> HttpResponseBase:
    """Replace the placeholder in an HTML response with the panel (other responses pass through)."""
    if not isinstance(response, HttpResponse) or "text/html" not in response.get("Content-Type", ""):
        return response
    marker = PLACEHOLDER.encode()
    if marker not in response.content:
        return response
    panel = render_to_string("store/_panel.html", context).encode(response.charset)
    response.content = response.content.replace(marker, panel, 1)
    if response.has_header("Content-Length"):
        response.headers["Content-Length"] = str(len(response.content))
    # Each response is now unique: the browser must ask again rather than reuse it. The page's own
    # max-age (set by the cache middleware) was for the server's cache.
    if response.has_header("Expires"):
        del response.headers["Expires"]
    add_never_cache_headers(response)
    return response
