"""Model writes invalidate every cache alias that may hold tagged entries, not only TAGCACHE['CACHE'].

A second alias lives in another database of the suite's Redis server (its own keys, its own
generations): each route that caches tagged entries there is shown to lose them when a tagged row
is saved in a transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import RequestFactory

from django_tagcache import TagCache, add_tags, invalidate_tags
from django_tagcache.middleware import TagCacheMiddleware
from django_tagcache.orm import outbox
from django_tagcache.views import cache_page_tagged
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_DB = 3
_paths = itertools.count()


def other_url() -> str:
    """The suite's Redis server, another database."""
    kwargs = redis.Redis.from_url(django_settings.REDIS_URL).connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{OTHER_DB}"


def other_cache() -> dict[str, Any]:
    return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": other_url(), "KEY_PREFIX": "t5"}


@pytest.fixture
def other(settings: Any) -> Iterator[str]:
    """A second Redis alias, ``other``, listed among the aliases model writes invalidate."""
    with redis.Redis.from_url(other_url()) as client:
        client.flushdb()
    settings.CACHES = {**settings.CACHES, "other": other_cache()}
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": ["default", "other"]}
    yield "other"
    with redis.Redis.from_url(other_url()) as client:
        client.flushdb()


@pytest.fixture
def fragments(settings: Any) -> Iterator[str]:
    """A ``template_fragments`` alias, which ``{% tagcache %}`` prefers when it has no ``using=``."""
    with redis.Redis.from_url(other_url()) as client:
        client.flushdb()
    settings.CACHES = {**settings.CACHES, "template_fragments": other_cache()}
    yield "template_fragments"
    with redis.Redis.from_url(other_url()) as client:
        client.flushdb()


def product() -> Product:
    return Product.objects.create(name="old", category=Category.objects.create(name="c"))


def rename(item: Product) -> None:
    with transaction.atomic():
        item.name = "new"
        item.save()


FRAGMENT = '{% load tagcache %}{% tagcache 600 "card" p.pk tags=p ' + "{using}" + "%}{{ p.name }}{% endtagcache %}"


def render(pk: int, using: str = "") -> str:
    template = Template(FRAGMENT.replace("{using}", f'using="{using}" ' if using else ""))
    return template.render(Context({"p": Product.objects.get(pk=pk)}))


def test_a_fragment_in_template_fragments_is_invalidated_by_a_save(fragments: str) -> None:
    item = product()
    assert render(item.pk) == "old"
    rename(item)
    assert render(item.pk) == "new"


def test_a_fragment_cached_with_using_is_invalidated_by_a_save(other: str) -> None:
    item = product()
    assert render(item.pk, using=other) == "old"
    rename(item)
    assert render(item.pk, using=other) == "new"


def _name_view(request: HttpRequest, pk: int) -> HttpResponse:
    item = Product.objects.get(pk=pk)
    add_tags(item)
    return HttpResponse(item.name)


def test_a_page_cached_with_cache_page_tagged_cache_is_invalidated_by_a_save(other: str) -> None:
    view = cache_page_tagged(600, cache=other)(_name_view)
    item = product()
    path = f"/named/{next(_paths)}/"
    assert view(RequestFactory().get(path), item.pk).content == b"old"
    rename(item)
    assert view(RequestFactory().get(path), item.pk).content == b"new"


def test_a_page_of_the_middleware_in_its_alias_is_invalidated_by_a_save(settings: Any, other: str) -> None:
    settings.CACHE_MIDDLEWARE_ALIAS = other
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": ["default"]}  # found without being listed
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django_tagcache.middleware.TagCacheMiddleware"]
    item = product()
    middleware = TagCacheMiddleware(lambda request: _name_view(request, item.pk))
    path = f"/named/{next(_paths)}/"
    assert middleware(RequestFactory().get(path)).content == b"old"
    rename(item)
    assert middleware(RequestFactory().get(path)).content == b"new"


def test_a_value_cached_in_another_alias_is_invalidated_by_a_save(other: str) -> None:
    item = product()
    cache = TagCache(other)
    assert cache.get_or_set("name", lambda: item.name, tags=[item]) == "old"
    rename(item)
    assert cache.get("name") is None


def test_invalidate_tags_without_an_alias_reaches_every_alias(other: str) -> None:
    TagCache(other).set("k", 1, tags=["t"])
    TagCache().set("k", 1, tags=["t"])
    assert invalidate_tags("t") == 2
    assert TagCache(other).get("k") is None
    assert TagCache().get("k") is None


def test_the_outbox_replays_an_invalidation_into_every_alias(settings: Any, other: str) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "OUTBOX": True}
    TagCache(other).set("k", 1, tags=["t"])
    outbox.PendingInvalidation.objects.create(tags=["t"])  # left by a process that died after commit
    assert outbox.drain() == (1, 0)
    assert TagCache(other).get("k") is None
