"""Async views cached under tags, served by a real ASGI server (uvicorn, tests/asgi.py) to real clients.

One uvicorn process per cache alias serves every test of the module (tests/asgi_site.py), so the
same process and event loop serve many requests; the clients are httpx, many of them at once.
The aliases are the two Redis backends of a single server; the in-process store (LocMem) lives
in the server's own process, where this test process cannot invalidate it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from django_tagcache import TagCache
from tests.asgi import Server, serve
from tests.servers import RedisServer

ALIASES = ["default", "builtin"]
_unique = itertools.count()


@pytest.fixture(scope="module", params=ALIASES)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(TAGCACHE_TEST_ALIAS=request.param) as running:
        running.alias = request.param  # type: ignore[attr-defined]
        yield running
        assert_clean_log(running)


def assert_clean_log(server: Server) -> None:
    """Nothing went wrong inside the server: no traceback, no loop mixed up, no warning logged."""
    log = server.log()
    for sign in ("Traceback", "attached to a different loop", "Event loop is closed", "WARNING", "ERROR"):
        assert sign not in log, log[-3000:]


def get(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    response = httpx.request(kwargs.pop("method", "GET"), server.url + path, timeout=30, **kwargs)
    assert response.status_code == 200, response.text[:500]
    return response


def stats(server: Server) -> dict[str, Any]:
    found: dict[str, Any] = get(server, "/stats/").json()
    return found


def invalidate(server: Server, *tags: str) -> int:
    """Invalidate from this process: another process than the server, the same Redis."""
    return TagCache(server.alias).invalidate_tags(*tags)  # type: ignore[attr-defined]


async def _many(server: Server, paths: list[str], clients: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
        return await asyncio.gather(*(client.get(path) for path in paths))


def many(server: Server, paths: list[str], clients: int = 100) -> list[httpx.Response]:
    """GET every path, ``clients`` connections at a time."""
    responses = asyncio.run(_many(server, paths, clients))
    assert [r.status_code for r in responses] == [200] * len(paths)
    return responses


def test_a_cached_async_view_serves_concurrent_clients_from_the_cache(server: Server) -> None:
    path = f"/page/?n={next(_unique)}"
    first = get(server, path).text
    before = stats(server)["computed"]["page"]
    responses = many(server, [path] * 100, clients=100)
    assert {r.text for r in responses} == {first}
    assert stats(server)["computed"]["page"] == before  # 100 hits, not one recompute


def test_an_invalidation_is_seen_by_the_next_request(server: Server) -> None:
    path = f"/page/?n={next(_unique)}"
    first = get(server, path).text
    assert get(server, path).text == first
    assert invalidate(server, "apage") >= 1
    second = get(server, path).text
    assert second != first
    assert get(server, path).text == second


def test_a_fragments_tags_bubble_up_to_the_async_view_that_renders_it(server: Server) -> None:
    path = f"/fragments/?n={next(_unique)}"
    first = get(server, path).text
    n = first.split()[1]
    assert first.strip() == f"page {n} fragment {n}"
    assert get(server, path).text == first
    invalidate(server, "frag")  # the fragment's tag: the page that contains it goes too
    m = get(server, path).text.split()[1]
    assert m != n
    invalidate(server, "fpage")  # the page's own tag: the fragment inside it stays cached
    o = get(server, path).text.split()
    assert o[1] != m
    assert o[-1] == m


def test_a_page_read_before_an_invalidation_in_its_own_request_is_not_stored(server: Server) -> None:
    # The first computation of /fenced/ has an invalidation of "late" complete after the request
    # started, then notes "late": its generation token is fresh, only the request's start refuses.
    path = "/fenced/"
    assert get(server, path).text == "fenced 1"
    assert get(server, path).text == "fenced 2"  # the first was not stored
    assert get(server, path).text == "fenced 2"  # the second was


# --- HTTP semantics: Django's cache_page on the same server is the reference -------------------

SCENARIOS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (query, first request, second request)
    "plain": ("", {}, {}),
    "sets a cookie": ("cookie=1", {}, {}),
    "sets a cookie, Vary: Cookie": ("cookie=1&vary=Cookie", {}, {}),
    "Vary: Cookie, other cookie": ("vary=Cookie", {"cookies": {"a": "1"}}, {"cookies": {"a": "2"}}),
    "Vary: Cookie, same cookie": ("vary=Cookie", {"cookies": {"a": "1"}}, {"cookies": {"a": "1"}}),
    "Vary: Accept-Language, other": ("vary=Accept-Language", {"headers": {"Accept-Language": "fr"}}, {}),
    "Cache-Control: private": ("cc=private", {}, {}),
    "max-age=0": ("cc=max-age%3D0", {}, {}),
    "HEAD after GET": ("", {}, {"method": "HEAD"}),
    "GET after HEAD": ("", {"method": "HEAD"}, {}),
}


def _cached(server: Server, view: str, query: str, first: dict[str, Any], second: dict[str, Any]) -> bool:
    path = f"/{view}/?{query}&n={next(_unique)}"
    before = stats(server)["computed"][view]
    one, two = get(server, path, **first), get(server, path, **second)
    computed: int = stats(server)["computed"][view] - before
    if "method" not in first and "method" not in second:
        assert (one.text == two.text) == (computed == 1)
    return computed == 1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_http_semantics_are_djangos(server: Server, scenario: str) -> None:
    query, first, second = SCENARIOS[scenario]
    get(server, f"/django/?warm={next(_unique)}")  # the reference view has run at least once
    get(server, f"/page/?warm={next(_unique)}")
    ours = _cached(server, "page", query, first, second)
    django = _cached(server, "django", query, first, second)
    assert ours == django, f"{scenario}: cached {ours} here, {django} by Django's cache_page"


# --- one process, one event loop, many requests -------------------------------------------------


def test_one_process_serves_many_requests_on_its_loop(server: Server) -> None:
    seed = random.randrange(2**32)
    print(f"seed {seed}")  # shown if the test fails
    rng = random.Random(seed)
    paths = [f"/{rng.choice(['page', 'fragments'])}/?k={rng.randrange(20)}" for _ in range(200)]
    for start in range(0, len(paths), 50):
        many(server, paths[start : start + 50], clients=50)
        invalidate(server, rng.choice(["apage", "fpage", "frag"]))
    assert_clean_log(server)


def test_cache_io_of_an_async_view_never_blocks_the_loop_nor_hops_to_a_thread(server: Server) -> None:
    path = f"/page/?n={next(_unique)}"
    before = stats(server)["sync_store_calls"]
    get(server, path)  # a miss, stored
    many(server, [path] * 50, clients=25)  # hits
    invalidate(server, "apage")
    get(server, path)  # a miss after an invalidation
    assert stats(server)["sync_store_calls"] == before


def test_an_aget_or_set_inside_an_async_page_is_fenced_and_runs_on_the_loop(server: Server) -> None:
    """The view reads, an invalidation completes, then its aget_or_set (a tag new to the page)
    misses: refused, page and value both; the next request stores both. The tokens of the new
    tag, the miss and the writes all go through the loop's own connection."""
    key = next(_unique)
    before = stats(server)["sync_store_calls"]
    texts = [get(server, f"/valuepage/?k={key}").text for _ in range(3)]
    assert texts == ["1", "2", "2"]  # the third is the page stored by the second
    assert stats(server)["sync_store_calls"] == before


def test_the_site_wide_middleware_serves_async_views_on_the_loop() -> None:
    with serve(TAGCACHE_TEST_SITE="1") as site:
        site.alias = "default"  # type: ignore[attr-defined]
        path = f"/site/?n={next(_unique)}"
        first = get(site, path).text
        before = stats(site)
        responses = many(site, [path] * 100, clients=50)
        assert {r.text for r in responses} == {first}
        invalidate(site, "apage")
        assert get(site, path).text != first
        after = stats(site)
        assert after["computed"]["page"] == before["computed"]["page"] + 1
        assert after["sync_store_calls"] == before["sync_store_calls"]
        assert_clean_log(site)


def test_an_async_view_is_served_without_redis_when_redis_is_down() -> None:
    redis_server = RedisServer.start()
    try:
        with serve(REDIS_URL=redis_server.url) as server:
            assert get(server, "/page/").text == "page 1 GET"
            assert get(server, "/page/").text == "page 1 GET"
            redis_server.stop()
            before = stats(server)
            texts = [get(server, "/page/").text for _ in range(5)]
            after = stats(server)
            assert texts == [f"page {n} GET" for n in range(2, 7)]  # computed each time, served
            assert after["sync_store_calls"] == before["sync_store_calls"]
            assert "Traceback" not in server.log()
    finally:
        redis_server.stop()


def test_a_plain_async_view_is_fenced_without_any_middleware() -> None:
    """No fence middleware, no cached page: the request's start still reaches the view's
    aget_or_set under a real ASGI server, and the value read before the invalidation is refused."""
    with serve(TAGCACHE_TEST_BARE="1") as bare:
        texts = [get(bare, "/value/?k=bare").text for _ in range(3)]
        assert texts == ["1", "2", "2"]  # refused, then stored and served
        assert stats(bare)["computed"]["value"] == 2
        assert_clean_log(bare)
