"""No stale write-back when the data was read before the caching call, and complete invalidation.

Each test is one interleaving, driven by hand, where the database holds the new value at the
end and the cache must not keep serving the old one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import AsyncClient, Client, RequestFactory
from django.urls import path

from django_tagcache import TagCache, cached, invalidate_tags
from django_tagcache.caching import fences
from django_tagcache.caching.api import get_store
from django_tagcache.caching.tags import normalize_tags
from django_tagcache.core import protections
from django_tagcache.core.cluster_store import ClusterTagStore
from django_tagcache.core.memory import MemoryStore
from django_tagcache.core.protocol import parse_invalidate, plan_invalidate
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)

CARD = (
    '{% load tagcache %}{% tagcache 600 "card" product.pk tags=product %}{{ product.name }}{% endtagcache %}'
)


@pytest.fixture(autouse=True)
def _on_alias(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": alias}


def card(product: Product) -> str:
    return Template(CARD).render(Context({"product": product}))


def edit(pk: int, **changes: Any) -> None:
    """Another editor loads the row, changes it and saves: committed and invalidated on return."""
    product = Product.objects.get(pk=pk)
    for name, value in changes.items():
        setattr(product, name, value)
    product.save()


def test_a_fragment_never_stores_an_instance_loaded_before_a_commit(alias: str) -> None:
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    loaded = Product.objects.get(pk=pk)  # the view reads the product
    edit(pk, name="new")  # an editor commits meanwhile
    assert card(loaded) == "old"  # what this request shows is its own business...
    assert card(Product.objects.get(pk=pk)) == "new"  # ...but it must not be stored for later visitors


def test_a_fragment_in_a_request_never_stores_data_read_before_it_opened(alias: str) -> None:
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    [tags] = normalize_tags(Product.objects.get(pk=pk))  # the row's instance tag
    source = '{% load tagcache %}{% tagcache 600 "n" tags=tags %}{{ n }}{% endtagcache %}'
    request_started.send(sender=None)  # as Django's handlers do when a request comes in
    try:
        name = Product.objects.values_list("name", flat=True).get(pk=pk)  # a plain value, no instance
        edit(pk, name="new")
        assert Template(source).render(Context({"n": name, "tags": tags})) == "old"
    finally:
        request_finished.send(sender=None)
    fresh = Product.objects.values_list("name", flat=True).get(pk=pk)
    assert Template(source).render(Context({"n": fresh, "tags": tags})) == "new"


def test_cached_never_stores_a_result_from_an_instance_loaded_before_a_commit(alias: str) -> None:
    @cached(timeout=600, tags=lambda product: [product], cache=alias)
    def title(product: Product) -> str:
        return product.name

    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    loaded = Product.objects.get(pk=pk)
    edit(pk, name="new")
    assert title(loaded) == "old"
    assert title(Product.objects.get(pk=pk)) == "new"


def _first_step_of_a_chunked_invalidation(alias: str, tags: list[str]) -> Callable[[], None]:
    """Move the generations and set big indexes aside, as invalidate_tags() does first; returns the rest."""
    store = get_store(alias)
    if isinstance(store, ClusterTagStore):
        drains = store.begin_invalidate(tags)

        def finish() -> None:
            store.finish(drains)

        return finish
    keys, args = plan_invalidate(store.keys, store.options, tags)
    _removed, pending = parse_invalidate(store.scripts("invalidate", keys, args), len(keys))
    assert pending, "the tag must be too big for one call"

    def rest() -> None:
        for aside, pending_set in pending:
            store.drain(aside, pending_set)

    return rest


def test_an_entry_read_while_an_invalidation_drains_does_not_vouch_for_a_fragment(
    alias: str, settings: Any
) -> None:
    if isinstance(get_store(alias), MemoryStore):
        pytest.skip("the in-process store invalidates in one step: nothing ever drains")
    settings.TAGCACHE = {"CACHE": alias, "CHUNK_SIZE": 5}
    tc = TagCache(alias)
    for i in range(12):
        tc.set(f"filler{i}", i, tags=["t"])
    price = {"now": "old"}
    assert tc.get_or_set("inner", lambda: price["now"], tags=["t"]) == "old"
    outer = Template('{% load tagcache %}{% tagcache 600 "outer" tags="o" %}[{{ inner }}]{% endtagcache %}')

    def inner() -> Any:
        return tc.get_or_set("inner", lambda: price["now"], tags=["t"])

    price["now"] = "new"  # the database changes, then the tag is invalidated:
    finish = _first_step_of_a_chunked_invalidation(alias, ["t"])
    assert outer.render(Context({"inner": inner})) == "[old]"  # read in the drain window
    finish()  # invalidate_tags() returns here
    assert outer.render(Context({"inner": inner})) == "[new]"


def test_a_get_or_set_missed_while_its_tag_drains_does_not_store_an_old_inner_entry(
    alias: str, settings: Any
) -> None:
    if isinstance(get_store(alias), MemoryStore):
        pytest.skip("the in-process store invalidates in one step: nothing ever drains")
    settings.TAGCACHE = {"CACHE": alias, "CHUNK_SIZE": 5}
    tc = TagCache(alias)
    for i in range(12):
        tc.set(f"filler{i}", i, tags=["t"])
    price = {"now": "old"}
    assert tc.get_or_set("inner", lambda: price["now"], tags=["t"]) == "old"
    price["now"] = "new"  # the database changes, then the tag is invalidated:
    finish = _first_step_of_a_chunked_invalidation(alias, ["t"])

    def outer() -> str:
        inner = tc.get_or_set("inner", lambda: price["now"], tags=["t"])  # not drained yet: old
        finish()  # invalidate_tags() returns here, before the outer value is written
        return f"[{inner}]"

    assert tc.get_or_set("outer", outer, tags=["t"]) == "[old]"
    assert tc.get_or_set("outer", lambda: f"[{price['now']}]", tags=["t"]) == "[new]"


def test_a_get_or_set_written_while_its_tag_drains_does_not_store_an_old_inner_entry(
    alias: str, settings: Any
) -> None:
    """As above, the outer value written before the drain ends: the end of the drain moves the
    generation (it records its completion there), but the value is already stored by then."""
    if isinstance(get_store(alias), MemoryStore):
        pytest.skip("the in-process store invalidates in one step: nothing ever drains")
    settings.TAGCACHE = {"CACHE": alias, "CHUNK_SIZE": 5}
    tc = TagCache(alias)
    for i in range(12):
        tc.set(f"filler{i}", i, tags=["t"])
    price = {"now": "old"}
    assert tc.get_or_set("inner", lambda: price["now"], tags=["t"]) == "old"
    price["now"] = "new"  # the database changes, then the tag is invalidated:
    finish = _first_step_of_a_chunked_invalidation(alias, ["t"])
    outer = tc.get_or_set(
        "outer", lambda: f"[{tc.get_or_set('inner', lambda: price['now'], tags=['t'])}]", tags=["t"]
    )
    assert outer == "[old]"  # the inner entry is not drained yet
    finish()  # invalidate_tags() returns here
    assert tc.get_or_set("outer", lambda: f"[{price['now']}]", tags=["t"]) == "[new]"


def test_a_purge_of_every_namespace_refuses_a_writer_in_flight(alias: str, settings: Any) -> None:
    from django_tagcache.caching.namespaces import in_namespace

    settings.TAGCACHE = {"CACHE": alias, "NAMESPACE": "tests.tenancy.tenant"}
    tc = TagCache(alias)

    def compute() -> str:
        value = "old"  # read from the database before the purge
        with in_namespace(None):
            invalidate_tags("t", all_namespaces=True, source="test")
        return value

    with in_namespace("acme"):
        assert tc.get_or_set("k", compute, tags=["t"]) == "old"
        assert tc.get("k") is None


def _listing(tc: TagCache, category: Category) -> list[str]:
    return tc.get_or_set(  # type: ignore[no-any-return]
        f"list:{category.pk}",
        lambda: sorted(Product.objects.filter(category=category).values_list("name", flat=True)),
        tags=[f"category:{category.pk}"],
    )


def test_two_editors_of_one_row_invalidate_every_category_it_left(alias: str) -> None:
    tc = TagCache(alias)
    a, b, c = (Category.objects.create(name=n) for n in "abc")
    pk = Product.objects.create(name="p", category=a).pk
    first, second = Product.objects.get(pk=pk), Product.objects.get(pk=pk)
    first.category = b
    first.save()
    assert _listing(tc, b) == ["p"]
    second.category = c  # still believes the row is in a
    second.save()
    assert _listing(tc, b) == []


def test_saving_under_another_pk_invalidates_the_row_it_overwrites(alias: str) -> None:
    tc = TagCache(alias)
    a, b = Category.objects.create(name="a"), Category.objects.create(name="b")
    one = Product.objects.create(name="one", category=a)
    Product.objects.create(name="two", category=b)
    assert _listing(tc, b) == ["two"]
    one.pk = Product.objects.get(name="two").pk
    one.save()  # overwrites the row of "two", which moves to a
    assert _listing(tc, b) == []


def test_cached_refuses_an_argument_without_a_stable_identity(alias: str) -> None:
    @cached(timeout=600, cache=alias)
    def account(request: Any) -> str:
        return str(request.user_name)

    alice, bob = RequestFactory().get("/account/"), RequestFactory().get("/account/")
    alice.user_name, bob.user_name = "alice", "bob"  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="key="):
        account(alice)
    with pytest.raises(TypeError, match="key="):
        account(bob)


# Each scenario above, with the protection that closes it switched off, must show its stale value
# again: a test that cannot fail proves nothing. (tests/test_interleavings.py does the same with
# random histories.)
PROOFS: list[tuple[str, Callable[..., None]]] = [
    ("fence", test_a_fragment_never_stores_an_instance_loaded_before_a_commit),
    ("drain_guard", test_an_entry_read_while_an_invalidation_drains_does_not_vouch_for_a_fragment),
    # The end of a drain moves the generation too, so of a value computed while a tag drains
    # the drain guard alone refuses the one written before the drain ends.
    ("drain_guard", test_a_get_or_set_written_while_its_tag_drains_does_not_store_an_old_inner_entry),
    ("namespace_scan", test_a_purge_of_every_namespace_refuses_a_writer_in_flight),
    ("stored_row", test_two_editors_of_one_row_invalidate_every_category_it_left),
]


@pytest.mark.parametrize(("protection", "scenario"), PROOFS, ids=[s.__name__[5:45] for _p, s in PROOFS])
def test_with_its_protection_off_each_scenario_shows_the_stale_value(
    alias: str, settings: Any, protection: str, scenario: Callable[..., None]
) -> None:
    if alias != "default":
        pytest.skip("one backend is enough to prove the scenario can fail")
    arguments = {"alias": alias, "settings": settings}
    wanted = scenario.__code__.co_varnames[: scenario.__code__.co_argcount]
    with protections.switched_off(protection), pytest.raises(AssertionError):
        scenario(**{name: arguments[name] for name in wanted})


def _fence_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(fences.current() is not None))


async def _async_fence_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(fences.current() is not None))


urlpatterns = [path("fence/", _fence_view), path("async-fence/", _async_fence_view)]


def test_every_request_is_the_read_fence_of_what_it_caches(alias: str, settings: Any) -> None:
    if alias != "default":
        pytest.skip("no cache involved")
    settings.ROOT_URLCONF = "tests.test_freshness"
    settings.MIDDLEWARE = []
    assert Client().get("/fence/").content == b"True"  # WSGI: Django's request_started

    async def through_asgi(url: str) -> bytes:
        return bytes((await AsyncClient().get(url)).content)

    # Under ASGI Django sends request_started from another task: the middleware gives the fence.
    assert async_to_sync(through_asgi)("/fence/") == b"False"
    settings.MIDDLEWARE = ["django_tagcache.middleware.ReadFenceMiddleware"]
    assert async_to_sync(through_asgi)("/fence/") == b"True"  # a sync view under ASGI
    assert async_to_sync(through_asgi)("/async-fence/") == b"True"
    assert Client().get("/fence/").content == b"True"  # and it does no harm under WSGI
    assert fences.current() is None  # the fence ends with the request
