"""The page middleware and the fragment tag driven the ways Django drives its own."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory
from django.utils.decorators import decorator_from_middleware_with_args

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store
from django_tagcache.middleware import (
    FetchFromTagCacheMiddleware,
    TagCacheMiddleware,
    UpdateTagCacheMiddleware,
)
from django_tagcache.web.fragments import fragment_key


@pytest.fixture(autouse=True)
def _default_cache(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "default"}


def _view(calls: list[int]) -> Any:
    def view(request: HttpRequest) -> HttpResponse:
        calls.append(1)
        return HttpResponse(f"call {len(calls)}")

    return view


def test_built_like_djangos_cache_page_it_caches() -> None:
    calls: list[int] = []
    view = decorator_from_middleware_with_args(TagCacheMiddleware)(page_timeout=60)(_view(calls))
    factory = RequestFactory()
    assert view(factory.get("/dfm/")).content == b"call 1"  # type: ignore[attr-defined]
    assert view(factory.get("/dfm/")).content == b"call 1"  # type: ignore[attr-defined]
    assert calls == [1]


def test_driven_through_process_request_and_process_response_it_caches() -> None:
    middleware = TagCacheMiddleware(lambda request: HttpResponse("unused"))
    factory = RequestFactory()
    request = factory.get("/halves/")
    assert middleware.process_request(request) is None  # a miss
    middleware.process_response(request, HttpResponse("stored"))
    hit = middleware.process_request(factory.get("/halves/"))
    assert hit is not None
    assert hit.content == b"stored"


def test_by_halves_it_caches() -> None:
    fetch = FetchFromTagCacheMiddleware(lambda request: HttpResponse("unused"))
    update = UpdateTagCacheMiddleware(lambda request: HttpResponse("unused"))
    factory = RequestFactory()
    request = factory.get("/by-halves/")
    assert fetch.process_request(request) is None
    update.process_response(request, HttpResponse("stored"))
    hit = fetch.process_request(factory.get("/by-halves/"))
    assert hit is not None
    assert hit.content == b"stored"


def test_cache_middleware_alias_is_honoured(settings: Any) -> None:
    settings.CACHE_MIDDLEWARE_ALIAS = "builtin"
    for cls in (TagCacheMiddleware, UpdateTagCacheMiddleware, FetchFromTagCacheMiddleware):
        assert cls(lambda request: HttpResponse("")).cache_alias == "builtin"
    assert (
        TagCacheMiddleware(lambda request: HttpResponse(""), cache_alias="default").cache_alias == "default"
    )


def test_without_cache_middleware_alias_pages_go_to_tagcache_cache(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "builtin"}
    assert TagCacheMiddleware(lambda request: HttpResponse("")).cache_alias == "builtin"


def test_a_middleware_alias_that_cannot_hold_tagged_pages_is_a_clear_error(settings: Any) -> None:
    settings.CACHES = {**settings.CACHES, "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    settings.CACHE_MIDDLEWARE_ALIAS = "dummy"
    with pytest.raises(ImproperlyConfigured, match=r"CACHE_MIDDLEWARE_ALIAS.*'dummy'"):
        TagCacheMiddleware(lambda request: HttpResponse(""))


def test_the_fragment_tag_prefers_a_template_fragments_cache_as_djangos_does(settings: Any) -> None:
    settings.CACHES = {**settings.CACHES, "template_fragments": settings.CACHES["builtin"]}
    Template('{% load tagcache %}{% tagcache 600 "tf" %}x{% endtagcache %}').render(Context())
    assert TagCache("template_fragments").get(fragment_key("tf")) is None  # a rendered entry, not a value
    store = get_store("template_fragments")
    assert store.client.exists(store.keys.entry(fragment_key("tf")))
    default = get_store("default")
    assert not default.client.exists(default.keys.entry(fragment_key("tf")))


def test_a_template_fragments_cache_that_cannot_hold_fragments_is_a_clear_error(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "template_fragments": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    with pytest.raises(TemplateSyntaxError, match="template_fragments"):
        Template('{% load tagcache %}{% tagcache 600 "tf" %}x{% endtagcache %}').render(Context())


def test_the_update_half_alone_caches_what_django_was_told_to_store() -> None:
    """Django's own tests set ``_cache_update_cache`` by hand, then run the update half around a view."""
    factory = RequestFactory()
    request = factory.head("/update-alone/")
    request._cache_update_cache = True  # type: ignore[attr-defined]
    UpdateTagCacheMiddleware(lambda request: HttpResponse("stored"))(request)
    hit = FetchFromTagCacheMiddleware(lambda request: HttpResponse("unused")).process_request(
        factory.head("/update-alone/")
    )
    assert hit is not None
    assert hit.content == b"stored"


def test_in_a_real_stack_the_update_half_opens_no_page_of_its_own(settings: Any) -> None:
    """Without the hand-set flag, only the fetching half's lookup opens the page."""
    request = RequestFactory().get("/no-lookup/")
    seen: list[object] = []

    def view(request: HttpRequest) -> HttpResponse:
        from django_tagcache.web.pages import pages

        seen.append(dict(pages(request)))
        return HttpResponse("x")

    UpdateTagCacheMiddleware(view)(request)
    assert seen == [{}]
