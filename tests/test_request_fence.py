"""A request's read fence through Django's own handlers, WSGI and ASGI.

Each view reads a product's name as a plain value (no instance, so no load time to go by),
then, in the first request only, an editor commits a new name; then the view caches what it
read under the product's tag. Only the start of the request can refuse that write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.template import Context, RequestContext, Template
from django.test import AsyncClient, Client
from django.urls import path

from django_tagcache import add_tags, tagcache
from django_tagcache.views import cache_page_tagged
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)

FRAGMENT = Template('{% load tagcache %}{% tagcache 600 "n" tags=tags %}{{ n }}{% endtagcache %}')
_edited: set[int] = set()
_page_views: list[int] = []


@pytest.fixture(autouse=True)
def _fresh() -> None:
    _edited.clear()
    _page_views.clear()


def _read_then_edit(pk: int) -> str:
    name = Product.objects.values_list("name", flat=True).get(pk=pk)
    if pk not in _edited:  # the first request only: an editor commits meanwhile
        _edited.add(pk)
        product = Product.objects.get(pk=pk)
        product.name = "new"
        product.save()
    return str(name)


def fragment_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Rendered as django.shortcuts.render() does: the request is in the template's context."""
    name = _read_then_edit(pk)
    return HttpResponse(FRAGMENT.render(RequestContext(request, {"n": name, "tags": f"shop.product:{pk}"})))


def plain_fragment_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The request is nowhere in sight of the package: only the request's fence can refuse."""
    name = _read_then_edit(pk)
    return HttpResponse(FRAGMENT.render(Context({"n": name, "tags": f"shop.product:{pk}"})))


def _page(request: HttpRequest, pk: int) -> HttpResponse:
    _page_views.append(pk)
    name = _read_then_edit(pk)
    add_tags(f"shop.product:{pk}")  # after the edit: only the request's start can refuse the page
    return HttpResponse(name)


_decorated: dict[str, Callable[..., HttpResponse]] = {}


def page_view(request: HttpRequest, alias: str, pk: int) -> HttpResponse:
    if alias not in _decorated:
        _decorated[alias] = cache_page_tagged(600, cache=alias)(_page)
    return _decorated[alias](request, pk=pk)


def jinja2_fragment_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A Jinja2 template rendered with the request in its context, as Django's Jinja2 backend does."""
    name = _read_then_edit(pk)
    template = _jinja2().from_string('{% tagcache 600, "jn", tags=tags %}{{ n }}{% endtagcache %}')
    return HttpResponse(template.render(n=name, tags=f"shop.product:{pk}", request=request))


def _jinja2() -> Any:
    jinja2 = pytest.importorskip("jinja2")
    return jinja2.Environment(extensions=["django_tagcache.jinja2.TagCacheExtension"], autoescape=True)


async def async_value_view(request: HttpRequest, pk: int) -> HttpResponse:
    """An async view caching a plain value with aget_or_set: only the request's fence can refuse."""
    name = await sync_to_async(_read_then_edit)(pk)
    return HttpResponse(await tagcache.aget_or_set(f"name:{pk}", name, tags=[f"shop.product:{pk}"]))


urlpatterns = [
    path("async/<int:pk>/", async_value_view),
    path("fragment/<int:pk>/", fragment_view),
    path("jinja2/<int:pk>/", jinja2_fragment_view),
    path("plain/<int:pk>/", plain_fragment_view),
    path("page/<str:alias>/<int:pk>/", page_view),
]


def _get(handler: str, url: str) -> bytes:
    if handler == "wsgi":
        return Client().get(url).content

    async def get() -> bytes:
        try:
            return (await AsyncClient().get(url)).content  # through Django's ASGI handler
        finally:
            # The view ran in asgiref's thread for sync code, whose database connection would
            # outlive the test (PostgreSQL then cannot drop the test database).
            await sync_to_async(connections.close_all)()

    return asyncio.run(get())


def _twice(settings: Any, alias: str, handler: str, view: str) -> list[bytes]:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias}  # CLOCK_SKEW_MARGIN 0: exact
    settings.ROOT_URLCONF = __name__
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    return [_get(handler, f"/{view}/{pk}/") for _ in range(2)]


@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_a_fragment_never_stores_a_value_read_before_an_edit_in_the_same_request(
    settings: Any, alias: str, handler: str
) -> None:
    settings.MIDDLEWARE = []
    assert _twice(settings, alias, handler, "fragment") == [b"old", b"new"]


@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_a_jinja2_fragment_never_stores_a_value_read_before_an_edit_in_the_same_request(
    settings: Any, alias: str, handler: str
) -> None:
    """As the Django tag: the request in the template's context bounds the fence by its start."""
    settings.MIDDLEWARE = []
    assert _twice(settings, alias, handler, "jinja2") == [b"old", b"new"]


@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_a_page_never_stores_a_value_read_before_an_edit_in_the_same_request(
    settings: Any, alias: str, handler: str
) -> None:
    settings.MIDDLEWARE = []
    assert _twice(settings, alias, handler, f"page/{alias}") == [b"old", b"new"]
    assert _get(handler, f"/page/{alias}/{_page_views[0]}/") == b"new"
    assert len(_page_views) == 2  # the second, fresh page was stored


@pytest.mark.parametrize("middleware", ["middleware.ReadFenceMiddleware", "middleware.RedisBudgetMiddleware"])
@pytest.mark.parametrize("handler", ["wsgi", "asgi"])
def test_with_the_request_middleware_any_value_cached_in_a_view_is_fenced(
    settings: Any, alias: str, handler: str, middleware: str
) -> None:
    settings.MIDDLEWARE = [f"django_tagcache.{middleware}"]
    assert _twice(settings, alias, handler, "plain") == [b"old", b"new"]


@pytest.mark.parametrize("middleware", ["middleware.ReadFenceMiddleware", "middleware.RedisBudgetMiddleware"])
def test_an_async_view_caching_with_aget_or_set_is_fenced(settings: Any, alias: str, middleware: str) -> None:
    settings.MIDDLEWARE = [f"django_tagcache.{middleware}"]
    assert _twice(settings, alias, "asgi", "async") == [b"old", b"new"]


def test_without_the_middleware_the_async_view_stores_the_old_value(settings: Any, alias: str) -> None:
    """Control: Django's AsyncClient serves a request outside any asgiref ThreadSensitiveContext
    (its ASGI handler, under a server, serves each in one: see tests/test_asgi.py), so no fence
    reaches the view's context, and the old name is stored."""
    settings.MIDDLEWARE = []
    assert _twice(settings, alias, "asgi", "async") == [b"old", b"old"]
