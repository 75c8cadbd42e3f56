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
from django_tagcache.web import pages
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
    pages._header_lists.clear()  # what earlier tests' pages left (harmless, but not counted here)

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
    # one round trip (an MGET). On a cluster the two entries live in different slots: one GET
    # each, sent together.
    hits = [seen[n][1:] for n in (2, 4, 5)]
    if alias == "cluster":
        assert hits == [(2, ["GET", "GET"])] * 3, seen
    else:
        assert hits == [(1, ["MGET"])] * 3, seen


async def other_view(request: HttpRequest) -> HttpResponse:
    _rendered.append(request.path)
    response = HttpResponse(f"other {len(_rendered)}")
    response["Vary"] = "X-Other"
    return response


other = cache_page_tagged(600, tags=["apage"])(other_view)
urlpatterns.append(path("other/", other))


def test_a_header_list_changed_since_it_was_read_costs_a_read_never_a_wrong_page(settings: Any) -> None:
    """The header list this process remembers for a page is not the one in Redis any more (the
    page was stored again, varying on other headers, by another process): the page is still
    the one Django's lookup names from the list Redis holds."""
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = []
    _rendered.clear()
    pages._header_lists.clear()  # what earlier tests' pages left (harmless, but not counted here)

    async def main() -> tuple[list[bytes], tuple[int, list[str]]]:
        client = AsyncClient()
        contents = []
        for url in ["/page/?alias=default", "/page/?alias=default", "/other/", "/other/"]:
            contents.append((await client.get(url, headers={"x-variant": "a", "x-other": "b"})).content)
        # What this process remembers for /page/ becomes /other/'s list (X-Other, not X-Variant).
        remembered = pages._header_lists
        (page_key,) = [key for key, raw in remembered.items() if b"HTTP_X_VARIANT" in raw]
        (other_key,) = [key for key, raw in remembered.items() if b"HTTP_X_OTHER" in raw]
        remembered[page_key] = remembered[other_key]
        with counting.count() as tally:
            contents.append((await client.get("/page/?alias=default", headers={"x-variant": "a"})).content)
        return contents, (tally.round_trips, tally.commands)

    contents, (trips, commands) = asyncio.run(main())
    assert contents == [b"page 1", b"page 1", b"other 2", b"other 2", b"page 1"]
    assert (trips, commands) == (2, ["MGET", "GET"])  # the guess missed: one more read
    assert pages._header_lists  # and the list read now is remembered for the next hit
