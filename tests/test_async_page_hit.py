"""What a cached async page costs on a hit: Redis round trips, counted on the loop's connection.

Django's page lookup reads the page's header list, then the page whose key that list gives; on
the event loop both are read, in one round trip, from the second hit of a page on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient
from django.urls import path

from django_tagcache import TagCache
from django_tagcache.views import cache_page_tagged
from tests import counting

_rendered: list[str] = []
_decorated: dict[str, Callable[..., Any]] = {}


async def view(request: HttpRequest) -> HttpResponse:
    _rendered.append(request.path)
    response = HttpResponse(f"page {len(_rendered)}")
    response["Vary"] = "X-Variant"
    return response


async def page(request: HttpRequest) -> HttpResponse:
    alias = request.GET["alias"]
    if alias not in _decorated:
        _decorated[alias] = cache_page_tagged(600, tags=["apage"], cache=alias)(view)
    response: HttpResponse = await _decorated[alias](request)
    return response


urlpatterns = [path("page/", page)]


@pytest.mark.parametrize("alias", ["default", "builtin", pytest.param("cluster", marks=pytest.mark.cluster)])
def test_an_async_page_hit_is_one_round_trip(
    settings: Any, alias: str, request: pytest.FixtureRequest
) -> None:
    if alias == "cluster":
        request.getfixturevalue("redis_cluster")
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias}
    settings.CACHE_MIDDLEWARE_ALIAS = alias
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = []
    _rendered.clear()

    async def main() -> list[tuple[bytes, int, list[str]]]:
        await TagCache(alias).aget("warm the loop's connection")
        client = AsyncClient()
        seen = []
        for language in ["en", "en", "en", "fr", "fr", "en"]:
            with counting.count() as tally:
                response = await client.get(f"/page/?alias={alias}", headers={"x-variant": language})
            seen.append((response.content, tally.round_trips, tally.commands))
        return seen

    seen = asyncio.run(main())
    contents = [content for content, _, _ in seen]
    assert contents == [b"page 1", b"page 1", b"page 1", b"page 2", b"page 2", b"page 1"]
    assert _rendered == ["/page/", "/page/"]
    # Requests 3, 5 and 6: hits after the first of their page; the header list and the page,
    # one round trip.
    assert [seen[n][1] for n in (2, 4, 5)] == [1, 1, 1], seen
