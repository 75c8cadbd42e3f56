"""Model writes invalidate every cache alias that may hold tagged entries, not only TAGCACHE['CACHE'].

A second alias lives in another database of the suite's Redis server (its own keys, its own
generations): each route that caches tagged entries there is shown to lose them when a tagged row
is saved in a transaction.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any, cast

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.urls import reverse

from django_tagcache import (
    TagCache,
    TagCacheUnavailable,
    add_tags,
    ainvalidate_tags,
    cached,
    invalidate_tags,
)
from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics, protections
from django_tagcache.middleware import TagCacheMiddleware
from django_tagcache.orm import outbox
from django_tagcache.views import cache_page_tagged
from tests.counting import CountingConnection, count
from tests.faults import Faulty
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_DB = 3
_paths = itertools.count()


def other_url() -> str:
    """The suite's Redis server, another database."""
    kwargs = redis.Redis.from_url(django_settings.REDIS_URL).connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{OTHER_DB}"


def other_cache() -> dict[str, Any]:
    return {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": other_url(),
        "KEY_PREFIX": "t5",
        "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}},
    }


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


FRAGMENT = '{% load tagcache %}{% tagcache 600 "card" p.pk tags=p {using}%}{{ p.name }}{% endtagcache %}'


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
    settings.TAGCACHE = {k: v for k, v in settings.TAGCACHE.items() if k != "CACHES"}  # found unlisted
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django_tagcache.middleware.TagCacheMiddleware"]
    item = product()
    middleware = TagCacheMiddleware(lambda request: _name_view(request, item.pk))
    path = f"/named/{next(_paths)}/"
    assert cast("HttpResponse", middleware(RequestFactory().get(path))).content == b"old"
    rename(item)
    assert cast("HttpResponse", middleware(RequestFactory().get(path))).content == b"new"


def test_a_value_cached_in_another_alias_is_invalidated_by_a_save(other: str) -> None:
    item = product()
    cache = TagCache(other)
    assert cache.get_or_set("name", lambda: item.name, tags=[item]) == "old"
    rename(item)
    assert cache.get("name") is None


def test_a_value_cached_by_cached_with_cache_is_invalidated_by_a_save(other: str) -> None:
    @cached(timeout=600, tags=lambda pk: [f"shop.product:{pk}"], cache=other)
    def name_of(pk: int) -> str:
        return Product.objects.get(pk=pk).name

    item = product()
    assert name_of(item.pk) == "old"
    rename(item)
    assert name_of(item.pk) == "new"


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


# --- Ordering: no entry is stored in one alias from an entry of another not invalidated yet ------

PAGE = (
    '{% load tagcache %}<p>{% tagcache 600 "card" p.pk tags=p using="other" %}{{ p.name }}'
    "{% endtagcache %}</p>"
)


def _page_view(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(Template(PAGE).render(Context({"p": Product.objects.get(pk=pk)})))


@pytest.mark.parametrize("marks", [True, False], ids=["marks", "marks-off"])
def test_a_page_rendered_between_two_aliases_invalidations_is_not_stored(other: str, marks: bool) -> None:
    """The page lives in ``default`` (invalidated first), its fragment in ``other`` (second).

    Between the two, a request renders the page: ``default`` has moved on, but the fragment it
    reads from ``other`` is still the old one. Stored, that page would show the old name after
    the save returned, until it expired. With the protection switched off, it is.
    """
    view = cache_page_tagged(600, cache="default", tags=lambda request, pk: [f"shop.product:{pk}"])(
        _page_view
    )
    item = product()
    path = f"/page/{next(_paths)}/"
    assert render(item.pk, using=other) == "old"  # the fragment is cached in "other"
    inner = get_store(other)
    original = inner.invalidate
    served: list[bytes] = []

    def between(tags: Any, origin: str | None = None) -> int:
        del inner.invalidate  # once: the page's own render must not come back here
        served.append(view(RequestFactory().get(path), item.pk).content)
        return original(tags, origin)

    inner.invalidate = between  # type: ignore[method-assign]
    with nullcontext() if marks else protections.switched_off("alias_marks"):
        rename(item)
    assert served == [b"<p>old</p>"]  # rendered from the fragment not invalidated yet
    after = view(RequestFactory().get(path), item.pk).content
    if marks:
        assert after == b"<p>new</p>"
        assert metrics.snapshot()["refused_writes"] >= 1
    else:
        assert after == b"<p>old</p>"  # the stale page the marks keep out


# --- Cost: one alias pays exactly what it paid before; several pay three round trips each ---------


def test_with_one_alias_a_save_invalidates_in_one_round_trip() -> None:
    item = product()
    rename(item)  # connections opened, scripts loaded
    with count() as tally, transaction.atomic():
        item.name = "newer"
        item.save()
    assert tally.round_trips == 1


def test_with_two_aliases_a_save_takes_three_round_trips_per_alias(other: str) -> None:
    item = product()
    rename(item)
    with count() as tally, transaction.atomic():
        item.name = "newer"
        item.save()
    # Raise the marks in each alias, invalidate each, lower the marks in each.
    assert tally.round_trips == 6
    assert len(tally.commands) == 6


def test_aliases_that_name_the_same_keys_are_invalidated_once(settings: Any, other: str) -> None:
    settings.CACHES = {**settings.CACHES, "twin": other_cache()}
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": ["default", "other", "twin"]}
    TagCache("twin").set("k", 1, tags=["t"])
    assert TagCache(other).get("k") == 1  # the same keys
    invalidate_tags("warm-up")  # connections opened, scripts loaded
    with count() as tally:
        assert invalidate_tags("t") == 1
    assert tally.round_trips == 6
    assert TagCache("twin").get("k") is None


# --- Failure: an alias that cannot be reached does not cost the others their invalidation --------


@pytest.fixture
def down(settings: Any, faulty: Faulty) -> Faulty:
    """``faulty`` (TAGCACHE['CACHE'], a server of its own) and ``other``, both invalidated by saves."""
    with redis.Redis.from_url(other_url()) as client:
        client.flushdb()
    settings.CACHES = {**settings.CACHES, "other": other_cache()}
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": ["other"], "OUTBOX": True}
    return faulty


def test_an_alias_down_keeps_its_invalidation_in_the_outbox_and_the_others_are_done(down: Faulty) -> None:
    item = product()
    TagCache("other").set("other-k", 1, tags=[item])
    TagCache("faulty").set("faulty-k", 1, tags=[item])
    down.stop()
    rename(item)  # committed: the save does not raise
    assert TagCache("other").get("other-k") is None  # the alias that was up is invalidated
    [row] = outbox.PendingInvalidation.objects.all()
    assert row.cache == "faulty"  # only what was not applied waits
    assert f"shop.product:{item.pk}" in row.tags
    down.restart()  # (without its data: the row is what remains to be done)
    assert outbox.drain() == (1, 0)
    assert not outbox.PendingInvalidation.objects.exists()


def test_an_alias_down_on_replay_leaves_a_row_for_that_alias_only(down: Faulty) -> None:
    TagCache("other").set("other-k", 1, tags=["t"])
    outbox.PendingInvalidation.objects.create(tags=["t"])  # for every alias
    down.stop()
    assert outbox.drain() == (0, 1)
    assert TagCache("other").get("other-k") is None
    [row] = outbox.PendingInvalidation.objects.all()
    assert (row.cache, row.tags, row.attempts) == ("faulty", ["t"], 1)


def test_an_alias_down_does_not_stop_invalidate_tags_in_the_others(down: Faulty) -> None:
    TagCache("other").set("k", 1, tags=["t"])
    down.stop()
    with pytest.raises(TagCacheUnavailable, match="'faulty'") as raised:
        invalidate_tags("t")
    assert raised.value.aliases == ("faulty",)
    assert TagCache("other").get("k") is None


def test_ainvalidate_tags_reaches_every_alias(other: str) -> None:
    TagCache(other).set("k", 1, tags=["t"])
    TagCache().set("k", 1, tags=["t"])
    assert async_to_sync(ainvalidate_tags)("t") == 2
    assert TagCache(other).get("k") is None
    assert TagCache().get("k") is None


# --- The marks themselves, on every supported backend ---------------------------------------------


def test_a_mark_holds_its_tags_in_progress_until_lowered(alias: str) -> None:
    cache, store = TagCache(alias), get_store(alias)
    assert all(store.vouching_generations(["t", "u"]))
    store.mark(["t", "u"], "alias:m", raised=True)
    assert store.vouching_generations(["t", "u", "v"])[:2] == [None, None]  # no entry read vouches
    assert cache.get_or_set("k", 1, tags=["t"]) == 1
    assert cache.get("k") is None  # computed while marked: served, not stored
    store.mark(["t", "u"], "alias:m", raised=False)
    assert all(store.vouching_generations(["t", "u"]))
    assert cache.get_or_set("k", 2, tags=["t"]) == 2
    assert cache.get("k") == 2


# --- Operations: the command and the admin without an alias reach every one ------------------------


def test_tagcache_invalidate_without_cache_reaches_every_alias(other: str) -> None:
    TagCache(other).set("k", 1, tags=["t"])
    TagCache().set("k", 1, tags=["t"])
    out = io.StringIO()
    call_command("tagcache_invalidate", "t", stdout=out)
    assert "on caches 'default', 'other'" in out.getvalue()
    assert "2 cache entries removed" in out.getvalue()
    assert TagCache(other).get("k") is None
    TagCache(other).set("k", 1, tags=["t"])
    call_command("tagcache_invalidate", "t", "--cache", "default", stdout=io.StringIO())
    assert TagCache(other).get("k") == 1  # --cache names one alias


def test_the_admin_purge_page_reaches_every_alias_unless_one_is_chosen(other: str) -> None:
    root = User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(root)
    page = reverse("admin:django_tagcache_purgerecord_purge")
    form = client.get(page)
    assert form.context["form"].fields["cache"].initial == ""  # every alias, chosen by default
    TagCache(other).set("k", 1, tags=["t"])
    confirm = client.post(page, {"tags": "t", "cache": ""})
    assert b"default, other" in confirm.content
    assert b'name="cache" value=""' in confirm.content
    assert client.post(page, {"tags": "t", "cache": "", "confirm": "yes"}).status_code == 302
    assert TagCache(other).get("k") is None


def test_invalidate_tags_across_all_namespaces_reaches_every_alias(other: str, settings: Any) -> None:
    from django_tagcache.caching.namespaces import in_namespace

    settings.TAGCACHE = {**settings.TAGCACHE, "NAMESPACE": "tests.tenancy.tenant"}
    placed = {"default": ("acme", "globex"), other: ("acme", "initech")}  # initech only in `other`
    for alias, names in placed.items():
        for name in names:
            with in_namespace(name):
                TagCache(alias).set("menu", f"{alias}:{name}", tags=["menu"])
                TagCache(alias).set("kept", 1, tags=["footer"])
    assert invalidate_tags("menu", all_namespaces=True, source="ops:test") == 4
    for alias, names in placed.items():
        for name in names:
            with in_namespace(name):
                assert TagCache(alias).get("menu") is None, (alias, name)
                assert TagCache(alias).get("kept") == 1, (alias, name)


def test_tagcache_consume_says_that_without_cache_it_reaches_every_alias() -> None:
    from django.core.management import load_command_class

    command = load_command_class("django_tagcache", "tagcache_consume")
    [cache] = [
        a
        for a in command.create_parser("manage.py", "tagcache_consume")._actions
        if "--cache" in a.option_strings
    ]
    assert "TAGCACHE['CACHES']" in str(cache.help)
