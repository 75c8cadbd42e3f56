"""L0, the request cache, for async requests: real requests through Django's ASGI handler
(``AsyncClient``), with Redis' own count of the ``GET`` commands it served (``INFO commandstats``),
which sees the reads of the view's event loop and of the threads its sync code runs in alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import Context, Template
from django.test import AsyncClient
from django.urls import path

from django_tagcache import ainvalidate_tags, cached, tagcache
from django_tagcache.caching import requestcache
from tests.test_near_cache import _url


@cached(tags=["a"])
async def expensive(n: int) -> int:
    return n * 2


async def reads(request: HttpRequest) -> JsonResponse:
    values = [await tagcache.aget_or_set("k", lambda: "v", tags=["a"]) for _ in range(5)]
    values += [await expensive(1) for _ in range(5)]
    values += [await tagcache.aget("plain") for _ in range(5)]
    return JsonResponse({"values": values, "l0": requestcache.active()})


async def invalidating(request: HttpRequest) -> JsonResponse:
    first = await tagcache.aget_or_set("k", lambda: "v1", tags=["a"])
    await ainvalidate_tags("a")
    second = await tagcache.aget_or_set("k", lambda: "v2", tags=["a"])
    return JsonResponse({"values": [first, second]})


FRAGMENTS = Template(
    "{% load tagcache %}{% for i in items %}"
    '{% tagcache 600 "row" tags="rows" %}row{% endtagcache %}'
    "{% endfor %}"
)


async def fragments(request: HttpRequest) -> HttpResponse:
    text = await sync_to_async(FRAGMENTS.render)(Context({"items": range(10)}))
    return HttpResponse(text)


urlpatterns = [path("reads/", reads), path("invalidating/", invalidating), path("fragments/", fragments)]

FENCE = "django_tagcache.middleware.ReadFenceMiddleware"
BUDGET = "django_tagcache.middleware.RedisBudgetMiddleware"


def gets() -> int:
    """How many GETs the suite's Redis has served so far."""
    with redis.Redis.from_url(_url()) as client:
        stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def request(url: str) -> tuple[Any, int]:
    """One real async request; what it returned and how many GETs Redis served for it."""

    async def go() -> Any:
        return await AsyncClient().get(url)

    before = gets()
    response = asyncio.run(go())
    assert response.status_code == 200
    return response, gets() - before


@pytest.fixture
def site(settings: Any) -> Any:
    settings.ROOT_URLCONF = __name__
    settings.TAGCACHE = {**settings.TAGCACHE, "REQUEST_CACHE": True}
    tagcache.get_or_set("k", lambda: "v", tags=["a"])
    tagcache.set("plain", "p")
    return settings


@pytest.mark.parametrize("middleware", [FENCE, BUDGET])
def test_an_async_request_reads_each_entry_once(site: Any, middleware: str) -> None:
    site.MIDDLEWARE = [middleware]
    request("/reads/")  # expensive(1) is computed and cached
    for _ in range(2):  # each request reads each of its three entries once, and only once
        response, served = request("/reads/")
        assert response.json() == {"values": ["v"] * 5 + [2] * 5 + ["p"] * 5, "l0": True}
        assert served == 3


def test_without_the_middleware_l0_is_off(site: Any) -> None:
    """Without the request's read fence L0 would not be safe: it stays off."""
    site.MIDDLEWARE = []
    request("/reads/")
    response, served = request("/reads/")
    assert response.json()["l0"] is False
    assert served == 15


def test_off_unless_request_cache(site: Any) -> None:
    site.TAGCACHE = {**site.TAGCACHE, "REQUEST_CACHE": False}
    site.MIDDLEWARE = [FENCE]
    request("/reads/")
    response, served = request("/reads/")
    assert response.json()["l0"] is False
    assert served == 15


def test_an_invalidation_the_request_makes_empties_it(site: Any) -> None:
    site.MIDDLEWARE = [FENCE]
    response, _served = request("/invalidating/")
    # "v" again would be the copy L0 held from before the invalidation.
    assert response.json() == {"values": ["v", "v2"]}


def test_a_fragment_in_a_loop_is_read_once(site: Any) -> None:
    site.MIDDLEWARE = [FENCE]
    request("/fragments/")  # rendered and stored
    response, served = request("/fragments/")
    assert response.content.decode() == "row" * 10
    assert served == 1


def test_nothing_outlives_the_request(site: Any) -> None:
    site.MIDDLEWARE = [FENCE]
    request("/reads/")
    assert not requestcache.active()
    tagcache.set("plain", "changed")  # by this process: not through any request's L0
    response, _served = request("/reads/")
    assert response.json()["values"][-1] == "changed"
