"""Async views under Django's ASGI handler (AsyncClient): the request's read fence, on the loop's connection.

The view reads its data (a plain value: no instance, so no load time to go by); then, in the
first request only, an editor changes it and the invalidation of its tag completes; then the view
caches what it read with ``aget_or_set``. The order is fixed by the view itself, no sleeps: only
the start of the request can refuse that write, and a stored old value would then be served by
the next request (and by the page that request caches).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient
from django.urls import path

from django_tagcache import TagCache, ainvalidate_tags
from django_tagcache.views import cache_page_tagged
from tests import counting

_data: dict[str, str] = {}
_edits: list[str] = []
_computed: list[str] = []


@pytest.fixture(autouse=True)
def _fresh() -> None:
    _data.clear()
    _data["name"] = "old"
    _edits.clear()
    _computed.clear()


async def value_view(request: HttpRequest) -> HttpResponse:
    name = _data["name"]  # the view reads its data
    if not _edits:  # the first request only: an editor commits a new name, its tag is invalidated
        _edits.append("new")
        _data["name"] = "new"
        await ainvalidate_tags("item")
    alias = request.GET["alias"]

    def compute() -> str:
        _computed.append(name)
        return name

    value = await TagCache(alias).aget_or_set("name", compute, timeout=600, tags=["item"])
    return HttpResponse(value)


_decorated: dict[str, Callable[..., Any]] = {}


async def page_view(request: HttpRequest) -> HttpResponse:
    alias = request.GET["alias"]
    if alias not in _decorated:
        _decorated[alias] = cache_page_tagged(600, tags=["apage"], cache=alias)(value_view)
    response: HttpResponse = await _decorated[alias](request)
    return response


urlpatterns = [path("plain/", value_view), path("page/", page_view)]


async def _get(url: str) -> bytes:
    return (await AsyncClient().get(url)).content  # through Django's ASGI handler


def _twice(settings: Any, alias: str, view: str) -> list[bytes]:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias}  # CLOCK_SKEW_MARGIN 0: exact
    settings.CACHE_MIDDLEWARE_ALIAS = alias
    settings.ROOT_URLCONF = __name__

    async def main() -> list[bytes]:
        return [await _get(f"/{view}/?alias={alias}") for _ in range(2)]

    return asyncio.run(main())


def test_an_async_page_never_stores_an_inner_value_read_before_an_invalidation(
    settings: Any, alias: str
) -> None:
    """cache_page_tagged on the async view, no fence middleware: the request's stamp must reach
    the view's aget_or_set, or the old value is stored and the next page is built on it."""
    settings.MIDDLEWARE = []
    assert _twice(settings, alias, "page") == [b"old", b"new"]
    assert TagCache(alias).get("name") == "new"


@pytest.mark.parametrize(
    "middleware",
    [
        ["middleware.TagCacheMiddleware"],
        ["middleware.ReadFenceMiddleware", "middleware.TagCacheMiddleware"],
        ["middleware.TagCacheMiddleware", "middleware.ReadFenceMiddleware"],
        ["middleware.RedisBudgetMiddleware", "middleware.TagCacheMiddleware"],
    ],
    ids=["site", "fence-site", "site-fence", "budget-site"],
)
def test_the_site_wide_page_fences_the_async_views_values(
    settings: Any, alias: str, middleware: list[str]
) -> None:
    """The site-wide middleware's stamp and the fence middleware's merge: the earliest wins."""
    settings.MIDDLEWARE = [f"django_tagcache.{name}" for name in middleware]
    assert _twice(settings, alias, "plain") == [b"old", b"new"]
    assert TagCache(alias).get("name") == "new"


def test_an_async_page_miss_sends_nothing_through_the_blocking_client(settings: Any, alias: str) -> None:
    """The page's tags, the inner aget_or_set's tags (tokens read as they are noted), its miss and
    write, the page's write: all on the loop's own connection, none blocking the loop."""
    if alias == "locmem":
        pytest.skip("counts Redis commands; the in-process store sends none")
    settings.MIDDLEWARE = []
    _edits.append("no edit")  # a plain miss, then a hit

    async def main() -> tuple[list[bytes], counting.Tally]:
        await TagCache(alias).aget("warm the loop's connection")
        with counting.count() as tally:
            contents = [await _get(f"/page/?alias={alias}") for _ in range(2)]
        return contents, tally

    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias}
    settings.ROOT_URLCONF = __name__
    contents, tally = asyncio.run(main())
    assert contents == [b"old", b"old"]
    assert _computed == ["old"]  # stored, then served from the page
    assert tally.commands  # the loop's connection did the work...
    assert tally.blocking == []  # ...and the blocking client sent nothing from the loop's thread
