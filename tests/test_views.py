"""``cache_page_tagged`` and the tag cache middleware, against a real Redis, once per supported backend."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, RequestFactory
from django.views.decorators.cache import cache_page
from hypothesis import given, settings
from hypothesis import strategies as st

from django_tagcache import TagCache
from django_tagcache.checks import check_settings
from django_tagcache.core import metrics
from django_tagcache.views import cache_page_tagged
from django_tagcache.web import cdn
from tests import keyspace
from tests.counting import count
from tests.test_templatetags import _dead_redis
from tests.views import CALLS, INVALIDATE_DURING_RENDER


@pytest.fixture(autouse=True)
def _fresh_views(alias: str, settings: Any) -> Iterator[None]:
    # Pages are built inside requests, whose start is their read fence: one clock here (no margin).
    settings.TAGCACHE = {"CACHE": alias, "CLOCK_SKEW_MARGIN": 0}
    CALLS.clear()
    INVALIDATE_DURING_RENDER.clear()
    yield
    INVALIDATE_DURING_RENDER.clear()


def entries(alias: str, tag: str) -> int:
    """How many entries are indexed under ``tag``."""
    return keyspace.index_size(alias, tag)


# --- HTTP semantics: the same as Django's cache_page -----------------------------------------

_prefixes = itertools.count()


def _scenario_view(calls: list[int], status: int, headers: dict[str, str], cookie: bool) -> Any:
    def view(request: HttpRequest) -> HttpResponse:
        calls.append(1)
        response = HttpResponse(f"call {len(calls)}", status=status)
        for name, value in headers.items():
            response[name] = value
        if cookie:
            response.set_cookie("session", "s3cr3t")
        return response

    return view


def _is_cached(decorate: Callable[[Any], Any], method: str, **scenario: Any) -> bool:
    calls: list[int] = []
    view = decorate(_scenario_view(calls, **scenario))
    factory = RequestFactory()
    for _ in range(2):
        view(factory.generic(method, "/scenario/"))
    return len(calls) == 1


SCENARIOS = {
    "plain": {"status": 200, "headers": {}, "cookie": False},
    "cookie without Vary: Cookie": {"status": 200, "headers": {}, "cookie": True},
    "cookie and Vary: Cookie": {"status": 200, "headers": {"Vary": "Cookie"}, "cookie": True},
    "Cache-Control: private": {"status": 200, "headers": {"Cache-Control": "private"}, "cookie": False},
    "Cache-Control: no-store": {"status": 200, "headers": {"Cache-Control": "no-store"}, "cookie": False},
    "Cache-Control: no-cache": {"status": 200, "headers": {"Cache-Control": "no-cache"}, "cookie": False},
    "max-age=0": {"status": 200, "headers": {"Cache-Control": "max-age=0"}, "cookie": False},
    "max-age=30": {"status": 200, "headers": {"Cache-Control": "max-age=30"}, "cookie": False},
    "Vary: *": {"status": 200, "headers": {"Vary": "*"}, "cookie": False},
    "404": {"status": 404, "headers": {}, "cookie": False},
}


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_what_is_cached_is_what_djangos_cache_page_caches(alias: str, method: str, scenario: str) -> None:
    prefix = f"p{next(_prefixes)}"
    caches["locmem"].clear()
    theirs = _is_cached(cache_page(60, cache="locmem", key_prefix=prefix), method, **SCENARIOS[scenario])
    ours = _is_cached(cache_page_tagged(60, cache=alias, key_prefix=prefix), method, **SCENARIOS[scenario])
    assert ours == theirs
    # A decorator's timeout wins over max-age, in Django as here.
    cacheable = ("plain", "cookie without Vary: Cookie", "max-age=0", "max-age=30")
    assert ours == (method != "POST" and scenario in cacheable)


def test_headers_of_a_hit_are_djangos(alias: str) -> None:
    prefix = f"p{next(_prefixes)}"
    caches["locmem"].clear()
    factory = RequestFactory()
    responses = {}
    for name, decorate in [
        ("theirs", cache_page(60, cache="locmem", key_prefix=prefix)),
        ("ours", cache_page_tagged(60, cache=alias, key_prefix=prefix)),
    ]:
        view = decorate(_scenario_view([], 200, {"Vary": "Accept-Encoding"}, False))
        view(factory.get("/h/"))
        responses[name] = view(factory.get("/h/"))
    assert set(responses["ours"].headers) == set(responses["theirs"].headers)
    for header in ("Cache-Control", "Vary"):
        assert responses["ours"][header] == responses["theirs"][header]


def test_get_is_cached_and_head_is_served_from_it(client: Client, alias: str) -> None:
    assert client.get(f"/{alias}/plain/").content == b"plain 1 GET"
    assert client.get(f"/{alias}/plain/").content == b"plain 1 GET"
    head = client.head(f"/{alias}/plain/")
    assert head.status_code == 200
    assert CALLS["plain"] == 1


def test_head_alone_is_cached(client: Client, alias: str) -> None:
    client.head(f"/{alias}/plain/")
    client.head(f"/{alias}/plain/")
    assert CALLS["plain"] == 1


def test_post_is_not_cached(client: Client, alias: str) -> None:
    assert client.post(f"/{alias}/plain/").content == b"plain 1 POST"
    assert client.post(f"/{alias}/plain/").content == b"plain 2 POST"
    assert client.get(f"/{alias}/plain/").content == b"plain 3 GET"


@pytest.mark.parametrize("i18n", [False, True])
def test_vary_accept_language(client: Client, alias: str, settings: Any, i18n: bool) -> None:
    settings.USE_I18N = i18n
    url = f"/{alias}/plain/?vary=Accept-Language"
    assert client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content == b"plain 1 GET"
    second = client.get(url, HTTP_ACCEPT_LANGUAGE="de").content
    assert client.get(url, HTTP_ACCEPT_LANGUAGE="fr").content == b"plain 1 GET"
    if i18n:
        # With USE_I18N Django keys pages by the active language, not by the raw header.
        assert second == b"plain 1 GET"
    else:
        assert second == b"plain 2 GET"
        assert client.get(url, HTTP_ACCEPT_LANGUAGE="de").content == b"plain 2 GET"
    # The header list and each variant are all written under the page's tags.
    assert entries(alias, "plain") == (2 if i18n else 3)


# --- Tags ------------------------------------------------------------------------------------


def test_invalidating_the_decorators_tags_removes_the_page(client: Client, alias: str) -> None:
    client.get(f"/{alias}/item/1/")
    client.get(f"/{alias}/item/2/")
    assert entries(alias, "item:1") == 2  # the page and its header list
    TagCache(alias).invalidate_tags("item:1")
    assert client.get(f"/{alias}/item/1/").content == b"item 1 3"
    assert client.get(f"/{alias}/item/2/").content == b"item 2 2"


@pytest.mark.parametrize("view", ["template", "rendered"])
def test_a_fragments_tags_bubble_up_to_the_page(client: Client, alias: str, view: str) -> None:
    first = client.get(f"/{alias}/{view}/").content
    assert client.get(f"/{alias}/{view}/").content == first
    assert CALLS[view] == 1
    TagCache(alias).invalidate_tags("frag")  # the tag of the fragment inside the page
    assert client.get(f"/{alias}/{view}/").content == first  # rendered again, the same
    assert CALLS[view] == 2


def test_a_fragment_served_from_the_cache_still_tags_the_page(client: Client, alias: str) -> None:
    client.get(f"/{alias}/rendered/")  # caches the fragment (and this page)
    client.get(f"/{alias}/template/")  # another page: the fragment is a hit there
    # The fragment, and each page with its header list.
    assert entries(alias, "frag") == 5
    TagCache(alias).invalidate_tags("frag")
    assert CALLS["template"] == 1
    client.get(f"/{alias}/template/")
    assert CALLS["template"] == 2


def test_get_or_set_and_add_tags_in_the_view_tag_the_page(client: Client, alias: str) -> None:
    client.get(f"/{alias}/data/")
    for n, tag in enumerate(["data", "added"], start=2):
        TagCache(alias).invalidate_tags(tag)
        client.get(f"/{alias}/data/")
        client.get(f"/{alias}/data/")
        assert CALLS["data"] == n


def test_an_invalidation_while_the_page_renders_refuses_the_write(client: Client, alias: str) -> None:
    INVALIDATE_DURING_RENDER.append("plain")
    assert client.get(f"/{alias}/plain/").content == b"plain 1 GET"
    assert metrics.snapshot()["refused_writes"] >= 1
    assert client.get(f"/{alias}/plain/").content == b"plain 2 GET"
    assert client.get(f"/{alias}/plain/").content == b"plain 2 GET"


def test_an_invalidation_of_a_tag_read_in_the_view_refuses_the_write(client: Client, alias: str) -> None:
    TagCache(alias).set("data", 41, tags=["data"])
    INVALIDATE_DURING_RENDER.append("data")  # after the view's get_or_set hit
    assert client.get(f"/{alias}/data/").content == b"data 41 1"
    assert client.get(f"/{alias}/data/").content == b"data 2 2"
    assert client.get(f"/{alias}/data/").content == b"data 2 2"


def test_an_invalidation_while_a_template_response_renders_refuses_the_write(
    client: Client, alias: str
) -> None:
    client.get(f"/{alias}/rendered/")  # caches the fragment: the page renders it as a hit
    INVALIDATE_DURING_RENDER.append("frag")  # then, later in the template, it is invalidated
    client.get(f"/{alias}/template/")
    client.get(f"/{alias}/template/")
    assert CALLS["template"] == 2


def test_a_page_hit_is_two_gets(client: Client, alias: str) -> None:
    keyspace.skip_in_process(alias)
    client.get(f"/{alias}/template/")
    with count() as tally:
        client.get(f"/{alias}/template/")
    assert (tally.round_trips, tally.commands) == (2, ["GET", "GET"])
    assert CALLS["template"] == 1


# --- Site-wide middleware ---------------------------------------------------------------------

MIDDLEWARES = {
    "single": ["django_tagcache.middleware.TagCacheMiddleware"],
    "twins": [
        "django_tagcache.middleware.UpdateTagCacheMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django_tagcache.middleware.FetchFromTagCacheMiddleware",
    ],
}


@pytest.fixture(params=list(MIDDLEWARES))
def site(request: pytest.FixtureRequest, settings: Any) -> Client:
    settings.MIDDLEWARE = MIDDLEWARES[request.param]
    return Client()


@pytest.mark.parametrize("view", ["template", "rendered", "data"])
def test_the_middleware_caches_pages_under_what_they_use(site: Client, alias: str, view: str) -> None:
    first = site.get(f"/site/{alias}/{view}/").content
    assert site.get(f"/site/{alias}/{view}/").content == first
    assert CALLS[view] == 1
    TagCache(alias).invalidate_tags("added" if view == "data" else "frag")
    site.get(f"/site/{alias}/{view}/")
    assert CALLS[view] == 2


def test_the_middleware_follows_djangos_rules(site: Client, alias: str) -> None:
    site.post(f"/site/{alias}/plain/")
    site.get(f"/site/{alias}/plain/?cookie=1&vary=Cookie")
    site.get(f"/site/{alias}/plain/?cookie=1&vary=Cookie")
    site.get(f"/site/{alias}/plain/?cc=private")
    site.get(f"/site/{alias}/plain/?cc=private")
    assert CALLS["plain"] == 5
    site.get(f"/site/{alias}/plain/")
    site.head(f"/site/{alias}/plain/")
    assert CALLS["plain"] == 6


def test_a_page_hit_through_the_middleware_is_two_gets(site: Client, alias: str) -> None:
    keyspace.skip_in_process(alias)
    site.get(f"/site/{alias}/template/")
    with count() as tally:
        site.get(f"/site/{alias}/template/")
    assert (tally.round_trips, tally.commands) == (2, ["GET", "GET"])


def test_stale_write_back_is_refused_through_the_middleware(site: Client, alias: str) -> None:
    INVALIDATE_DURING_RENDER.append("frag")
    site.get(f"/site/{alias}/template/")  # the fragment's tag is invalidated while the page renders
    site.get(f"/site/{alias}/template/")
    assert CALLS["template"] == 2


def test_a_decorated_view_behind_the_middleware(site: Client, alias: str, raw: redis.Redis) -> None:
    site.get(f"/{alias}/template/")  # the decorator caches it; the middleware caches it too
    site.get(f"/{alias}/template/")
    assert CALLS["template"] == 1
    TagCache(alias).invalidate_tags("frag")
    site.get(f"/{alias}/template/")
    assert CALLS["template"] == 2


# --- Async views and ASGI --------------------------------------------------------------------


@pytest.mark.parametrize("view", ["async_template", "template"])
@pytest.mark.parametrize("where", ["decorated", "site"])
def test_through_asgi(alias: str, settings: Any, view: str, where: str) -> None:
    """Under ASGI Django renders a TemplateResponse in another thread than the view's: tags still bubble."""
    url = f"/{alias}/{view}/"
    if where == "site":
        settings.MIDDLEWARE = MIDDLEWARES["single"]
        url = f"/site/{alias}/{view}/"
    client = AsyncClient()

    async def get() -> bytes:
        response = await client.get(url)
        assert response.status_code == 200
        return bytes(response.content)

    first = async_to_sync(get)()
    assert async_to_sync(get)() == first
    assert CALLS[view] == 1
    TagCache(alias).invalidate_tags("frag")
    assert async_to_sync(get)() == first
    assert CALLS[view] == 2


# --- CDN header and purge hook ------------------------------------------------------------------


def test_the_cdn_header_carries_the_pages_tags(client: Client, alias: str, settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": alias, "CDN_HEADER": "Surrogate-Key"}
    miss = client.get(f"/{alias}/template/")
    hit = client.get(f"/{alias}/template/")
    assert CALLS["template"] == 1
    assert miss["Surrogate-Key"] == hit["Surrogate-Key"] == "frag page"


def test_cache_tag_is_comma_separated(client: Client, alias: str, settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": alias, "CDN_HEADER": "Cache-Tag"}
    assert client.get(f"/{alias}/template/")["Cache-Tag"] == "frag,page"


def test_no_cdn_header_by_default(client: Client, alias: str) -> None:
    response = client.get(f"/{alias}/template/")
    assert "Surrogate-Key" not in response
    assert "Cache-Tag" not in response


def test_keys_are_tags_unless_they_cannot_be() -> None:
    long = "x" * (cdn.MAX_KEY + 1)
    assert cdn.header_keys(["b", "a:1", "a:1"], "Surrogate-Key") == ("a:1", "b")
    hashed = cdn.tag_key(long, "Surrogate-Key")
    assert hashed.startswith("tc-h:")
    assert len(hashed) == 37
    assert hashed == cdn.tag_key(long, "Cache-Tag")  # deterministic
    assert cdn.tag_key("café", "Surrogate-Key").startswith("tc-h:")  # HTTP headers are ASCII
    assert cdn.tag_key("a,b", "Surrogate-Key") == "a,b"
    assert cdn.tag_key("a,b", "Cache-Tag").startswith("tc-h:")  # the Cache-Tag separator


def test_too_many_instance_tags_fall_back_to_their_family() -> None:
    tags = [f"shop.product:{pk}" for pk in range(3000)] + ["promo"]
    keys = cdn.header_keys(tags, "Surrogate-Key")
    assert keys == ("promo", "tc-f:shop.product")


def test_too_many_families_fall_back_to_buckets() -> None:
    tags = [f"family{n}:{n}" for n in range(3000)]
    keys = cdn.header_keys(tags, "Cache-Tag")
    assert 200 < len(keys) <= 256
    assert all(key.startswith("tc-b:") and len(key) == 7 for key in keys)


_TAG = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp"), max_codepoint=0x2FF),
    min_size=1,
    max_size=300,
)
_FAMILY_TAG = st.builds(
    lambda family, rest: f"{family}:{rest}", st.sampled_from(["a", "b.c", "é", "x" * 200]), _TAG
)


@settings(max_examples=60, deadline=None)
@given(
    tags=st.lists(st.one_of(_TAG, _FAMILY_TAG), min_size=1, max_size=800),
    header=st.sampled_from(["Surrogate-Key", "Cache-Tag"]),
)
def test_headers_fit_and_a_purge_of_any_tag_reaches_the_page(tags: list[str], header: str) -> None:
    value = cdn.header_value(tags, header)
    assert len(value.encode("ascii")) <= cdn.MAX_HEADER < 16 * 1024
    keys = set(value.split("," if header == "Cache-Tag" else " "))
    assert all(len(key) < 1024 and key.isprintable() and " " not in key for key in keys)
    for tag in set(tags):
        assert keys & set(cdn.purge_keys([tag], header)), tag


PURGED: list[tuple[str, ...]] = []


def record_purge(tags: tuple[str, ...]) -> None:
    PURGED.append(tags)


def failing_purge(tags: tuple[str, ...]) -> None:
    raise RuntimeError("the CDN is down")


def test_the_purge_hook_gets_every_invalidation(alias: str, settings: Any) -> None:
    PURGED.clear()
    TagCache(alias).invalidate_tags("before")
    settings.TAGCACHE = {"CACHE": alias, "CDN_PURGE": "tests.test_views.record_purge"}
    TagCache(alias).invalidate_tags("b", "a")
    settings.TAGCACHE = {"CACHE": alias}
    TagCache(alias).invalidate_tags("after")
    assert PURGED == [("a", "b")]


def test_a_failing_purge_hook_is_logged_not_raised(
    alias: str, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.TAGCACHE = {"CACHE": alias, "CDN_PURGE": "tests.test_views.failing_purge"}
    TagCache(alias).set("k", 1, tags=["a"])
    assert TagCache(alias).invalidate_tags("a") == 1
    assert "CDN_PURGE failed" in caplog.text
    assert "the CDN is down" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [
        {"CDN_PURGE": "tests.test_views.nope"},
        {"CDN_PURGE": "tests.test_views.PURGED"},
        {"CDN_HEADER": "X-Tags"},
    ],
)
def test_bad_cdn_settings_are_reported_by_the_system_check(settings: Any, bad: dict[str, str]) -> None:
    settings.TAGCACHE = bad
    messages = check_settings()
    assert [m.id for m in messages] == ["django_tagcache.E001"]


def test_a_page_counts_as_one_miss_then_one_hit(client: Client, alias: str) -> None:
    client.get(f"/{alias}/plain/")
    assert (metrics.snapshot()["hits"], metrics.snapshot()["misses"]) == (0, 1)
    client.get(f"/{alias}/plain/")
    assert (metrics.snapshot()["hits"], metrics.snapshot()["misses"]) == (1, 1)


def test_an_unreachable_redis_serves_pages_uncached(settings: Any) -> None:
    _dead_redis(settings)
    settings.MIDDLEWARE = MIDDLEWARES["single"]
    client = Client()
    for n in (1, 2):
        assert client.get("/site/default/plain/").content == f"plain {n} GET".encode()
    calls: list[int] = []
    view = cache_page_tagged(60, tags=["t"])(_scenario_view(calls, 200, {}, False))
    for _ in range(2):
        assert view(RequestFactory().get("/dead/")).status_code == 200
    assert len(calls) == 2
