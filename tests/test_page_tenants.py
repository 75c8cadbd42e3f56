"""Pages and CDN keys under namespaces: a tenant's page is never stored for, served to or purged
by another; CDN headers only on stored pages."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import Client, RequestFactory

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store
from django_tagcache.caching.namespaces import in_namespace
from django_tagcache.views import cache_page_tagged
from django_tagcache.web import cdn
from tests.views import CALLS, INVALIDATE_DURING_RENDER

UPDATE = "django_tagcache.middleware.UpdateTagCacheMiddleware"
FETCH = "django_tagcache.middleware.FetchFromTagCacheMiddleware"
SINGLE = "django_tagcache.middleware.TagCacheMiddleware"
TENANT = "tests.tenancy.TenantMiddleware"


@pytest.fixture(autouse=True)
def _namespaced(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "default", "NAMESPACE": "tests.tenancy.tenant"}
    CALLS.clear()
    INVALIDATE_DURING_RENDER.clear()


def _entries(namespace: str | None) -> list[str]:
    store = get_store("default")
    marker = f":n:{namespace}:e:" if namespace else ":tagcache:e:"
    return [key.decode() for key in store.client.scan_iter(count=1000) if marker in key.decode()]


# --- 1. The page is stored in the namespace it was looked up in -----------------------------------


@pytest.mark.parametrize(
    "middleware", [[UPDATE, TENANT, FETCH], [TENANT, UPDATE, FETCH], [TENANT, SINGLE]], ids=str
)
def test_a_tenants_page_is_stored_in_its_namespace(settings: Any, middleware: list[str]) -> None:
    settings.MIDDLEWARE = middleware
    client = Client()
    client.get("/site/default/plain/", HTTP_X_TENANT="acme")
    assert _entries(None) == []
    assert _entries("acme")
    client.get("/site/default/plain/")  # a visitor of no tenant gets a page of their own
    assert CALLS["plain"] == 2
    client.get("/site/default/plain/", HTTP_X_TENANT="acme")
    assert CALLS["plain"] == 2  # acme's page was stored, for acme


def test_a_tenants_tagged_page_is_stored(settings: Any) -> None:
    settings.MIDDLEWARE = [UPDATE, TENANT, FETCH]
    client = Client()
    for _ in range(2):
        client.get("/site/default/data/", HTTP_X_TENANT="acme")
    assert CALLS["data"] == 1
    with in_namespace("acme"):
        TagCache("default").invalidate_tags("added")
    client.get("/site/default/data/", HTTP_X_TENANT="acme")
    assert CALLS["data"] == 2


def test_a_namespace_set_below_the_fetching_middleware_is_not_cached(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Looked up in no namespace, rendered in acme's: storing it would serve it to everyone."""
    settings.MIDDLEWARE = [UPDATE, FETCH, TENANT]
    client = Client()
    with caplog.at_level(logging.WARNING, logger="django_tagcache"):
        for _ in range(2):
            client.get("/site/default/plain/", HTTP_X_TENANT="acme")
    assert CALLS["plain"] == 2
    assert _entries(None) == []
    assert "namespace" in caplog.text


# --- 2 and 4. CDN keys: per namespace, and out of reach of literal tags ---------------------------


@pytest.mark.parametrize("header", ["Surrogate-Key", "Cache-Tag"])
def test_a_purge_in_one_namespace_names_no_key_of_another(header: str) -> None:
    tags = ["shop.product:1", "promo"]
    many = [f"shop.product:{pk}" for pk in range(3000)]
    with in_namespace("acme"):
        acme = set(cdn.purge_keys(tags, header)) | set(cdn.purge_keys(many, header))
        acme_page = set(cdn.header_keys(tags, header)) | set(cdn.header_keys(many, header))
    with in_namespace("globex"):
        globex = set(cdn.purge_keys(tags, header)) | set(cdn.purge_keys(many, header))
        globex_page = set(cdn.header_keys(tags, header)) | set(cdn.header_keys(many, header))
    plain_page = set(cdn.header_keys(tags, header)) | set(cdn.header_keys(many, header))
    assert not acme & (globex_page | plain_page)
    assert not globex & (acme_page | plain_page)
    assert acme & acme_page


@pytest.mark.parametrize("header", ["Surrogate-Key", "Cache-Tag"])
@pytest.mark.parametrize("literal", ["tc-f:shop.product", "TC-F:shop.product", "tc-b:00", "Tc-H:0"])
def test_a_literal_tag_cannot_name_a_generated_key(header: str, literal: str) -> None:
    """A purge of the tag "tc-f:shop.product" must not reach the pages that fell back to that family."""
    products = [f"shop.product:{pk}" for pk in range(3000)]
    page = {key.lower() for key in cdn.header_keys(products, header)}
    assert page == {"tc-f:shop.product"}
    assert not {key.lower() for key in cdn.purge_keys([literal], header)} & page
    own = cdn.tag_key(literal, header)
    assert own.startswith("tc-h:")
    assert len(own) == 37  # a hash: the one generated form a tag can take


# --- 3. Only stored, shared-cacheable responses carry the header ----------------------------------


@pytest.fixture
def _cdn_header(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "default", "CDN_HEADER": "Surrogate-Key"}


@pytest.mark.usefixtures("_cdn_header")
@pytest.mark.parametrize("cc", ["private", "no-store", "private, max-age=60"])
def test_a_response_that_is_not_stored_carries_no_tags(client: Client, cc: str) -> None:
    response = client.get(f"/default/plain/?cc={cc}")
    assert "Surrogate-Key" not in response
    assert "Surrogate-Key" in client.get("/default/plain/")


@pytest.mark.usefixtures("_cdn_header")
def test_a_refused_write_carries_no_tags(client: Client) -> None:
    INVALIDATE_DURING_RENDER.append("plain")  # the page's own tag, invalidated while it renders
    assert "Surrogate-Key" not in client.get("/default/plain/")


@pytest.mark.usefixtures("_cdn_header")
def test_a_streaming_response_carries_no_tags() -> None:
    @cache_page_tagged(60, tags=["shop.order:9001"])
    def stream(request: HttpRequest) -> StreamingHttpResponse:
        return StreamingHttpResponse(iter([b"a", b"b"]))

    response = stream(RequestFactory().get("/stream/"))
    assert "Surrogate-Key" not in response


@pytest.mark.usefixtures("_cdn_header")
def test_a_stored_page_carries_its_tags_on_the_miss_and_the_hit() -> None:
    @cache_page_tagged(60, tags=["shop.product:1"])
    def page(request: HttpRequest) -> HttpResponse:
        return HttpResponse("p")

    factory = RequestFactory()
    assert page(factory.get("/p/"))["Surrogate-Key"] == "shop.product:1"
    assert page(factory.get("/p/"))["Surrogate-Key"] == "shop.product:1"
