"""Pages whose tags are built from the URL: hostile input is served uncached, never a 500."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from django_tagcache.caching.api import get_store
from django_tagcache.views import cache_page_tagged


@pytest.fixture(autouse=True)
def _default_cache(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "default"}


def _post_view() -> tuple[Any, list[str]]:
    calls: list[str] = []

    @cache_page_tagged(60, tags=lambda request, slug: [f"post:{slug}"])
    def post(request: HttpRequest, slug: str) -> HttpResponse:
        calls.append(slug)
        return HttpResponse(f"post {slug} {len(calls)}")

    return post, calls


@pytest.mark.parametrize("slug", ["with space", "x" * 300, "tab\there", "new\nline"])
def test_a_tag_built_from_the_url_that_is_not_a_tag_serves_the_page_uncached(
    slug: str, caplog: pytest.LogCaptureFixture
) -> None:
    view, calls = _post_view()
    factory = RequestFactory()
    with caplog.at_level(logging.WARNING, logger="django_tagcache"):
        for _ in range(3):
            response = view(factory.get("/post/"), slug)
            assert response.status_code == 200
    assert len(calls) == 3  # served, never stored
    store = get_store()
    assert not list(store.client.scan_iter(match="*tagcache*", count=1000))
    warnings = [r for r in caplog.records if "not a valid tag" in r.getMessage()]
    assert len(warnings) == 1  # logged once, not once per request


def test_a_good_slug_is_still_cached() -> None:
    view, calls = _post_view()
    factory = RequestFactory()
    view(factory.get("/post/"), "hello")
    assert view(factory.get("/post/"), "hello").content == b"post hello 1"
    assert calls == ["hello"]
