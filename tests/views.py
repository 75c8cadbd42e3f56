"""Views of the page tests: one set per cache alias (tests/urls.py), decorated or not (for the middleware)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.response import TemplateResponse

from django_tagcache import TagCache, add_tags
from django_tagcache.views import cache_page_tagged

#: How many times each view body ran, by name.
CALLS: Counter[str] = Counter()
#: Invalidations the next render performs while it renders (to provoke the stale write-back race).
INVALIDATE_DURING_RENDER: list[str] = []


class Count:
    """A template value that counts how often it is rendered."""

    def __init__(self) -> None:
        self.n = 0

    def __str__(self) -> str:
        self.n += 1
        return str(self.n)


def _invalidate_now(alias: str) -> str:
    while INVALIDATE_DURING_RENDER:
        TagCache(alias).invalidate_tags(INVALIDATE_DURING_RENDER.pop())
    return ""


def _context(alias: str, **extra: Any) -> dict[str, Any]:
    return {
        "alias": alias,
        "counter": Count(),
        "fragment_tags": "frag",
        "message": "hello",
        "invalidate": lambda: _invalidate_now(alias),
        **extra,
    }


def http_options(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """``response`` with what the query asks: ``vary=`` a Vary header, ``cookie`` a cookie set,
    ``cc=`` a Cache-Control header."""
    if "vary" in request.GET:
        response["Vary"] = request.GET["vary"]
    if "cookie" in request.GET:
        response.set_cookie("c", "1")
    if "cc" in request.GET:
        response["Cache-Control"] = request.GET["cc"]
    return response


def undecorated_views(alias: str) -> dict[str, Callable[..., HttpResponse]]:
    """The views, without a decorator: for the site-wide middleware, and decorated below."""

    def plain(request: HttpRequest) -> HttpResponse:
        CALLS["plain"] += 1
        _invalidate_now(alias)
        return http_options(request, HttpResponse(f"plain {CALLS['plain']} {request.method}"))

    def item(request: HttpRequest, pk: int) -> HttpResponse:
        CALLS["item"] += 1
        return HttpResponse(f"item {pk} {CALLS['item']}")

    def template(request: HttpRequest) -> TemplateResponse:
        CALLS["template"] += 1
        return TemplateResponse(request, "tagcache_tests/page.html", _context(alias))

    def rendered(request: HttpRequest) -> HttpResponse:
        CALLS["rendered"] += 1
        return render(request, "tagcache_tests/page.html", _context(alias))

    def data(request: HttpRequest) -> HttpResponse:
        CALLS["data"] += 1
        value = TagCache(alias).get_or_set("data", lambda: CALLS["data"], tags=["data"])
        add_tags("added")
        _invalidate_now(alias)
        return HttpResponse(f"data {value} {CALLS['data']}")

    async def async_template(request: HttpRequest) -> TemplateResponse:
        CALLS["async_template"] += 1
        return TemplateResponse(request, "tagcache_tests/page.html", _context(alias))

    return {
        "plain": plain,
        "item": item,
        "template": template,
        "rendered": rendered,
        "data": data,
        "async_template": async_template,  # type: ignore[dict-item]
    }


def decorated_views(alias: str) -> dict[str, Callable[..., HttpResponse]]:
    views = undecorated_views(alias)
    return {
        "plain": cache_page_tagged(60, tags=["plain"], cache=alias)(views["plain"]),
        "item": cache_page_tagged(60, tags=lambda request, pk: [f"item:{pk}"], cache=alias)(views["item"]),
        "template": cache_page_tagged(60, tags="page", cache=alias)(views["template"]),
        "rendered": cache_page_tagged(60, cache=alias)(views["rendered"]),
        "data": cache_page_tagged(60, cache=alias)(views["data"]),
        "async_template": cache_page_tagged(60, tags="async", cache=alias)(views["async_template"]),
    }
