"""TTL_JITTER applies to every computed entry: get_or_set values, fragments and pages alike."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import RequestFactory
from django.utils.cache import get_cache_key

from django_tagcache.caching.api import get_store
from django_tagcache.views import cache_page_tagged
from django_tagcache.web.fragments import fragment_key
from django_tagcache.web.pages import PageCache
from tests.keyspace import Keys


@pytest.fixture(autouse=True)
def _jitter(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": alias, "TTL_JITTER": 0.5}


def _spread(ttls: list[int]) -> None:
    assert all(50_000 <= ttl <= 100_000 for ttl in ttls), ttls
    assert len({ttl // 1000 for ttl in ttls}) > 1  # not all stored with the exact timeout


def test_fragments_are_jittered(alias: str, keys: Keys) -> None:
    template = Template('{% load tagcache %}{% tagcache 100 "j" n tags="t" %}{{ n }}{% endtagcache %}')
    for n in range(20):
        template.render(Context({"n": n}))
    store = get_store(alias)
    _spread([keys.pttl(store.keys.entry(fragment_key("j", [n]))) for n in range(20)])


def test_pages_are_jittered(alias: str, keys: Keys) -> None:
    @cache_page_tagged(100, tags=["t"], cache=alias)
    def page(request: HttpRequest) -> HttpResponse:
        return HttpResponse("p")

    factory = RequestFactory()
    for n in range(20):
        page(factory.get(f"/jitter/{n}/"))
    store = get_store(alias)
    ttls = []
    for n in range(20):
        key = get_cache_key(factory.get(f"/jitter/{n}/"), "", "GET", cache=PageCache(alias))  # type: ignore[arg-type]
        assert key is not None
        ttls.append(keys.pttl(store.keys.entry(key)))
    _spread(ttls)
