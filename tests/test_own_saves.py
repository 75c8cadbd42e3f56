"""An instance that saved itself (or came from ``objects.create()``) is a tag source like a fresh one.

Its own save invalidates its tags, and that invalidation completes after the instance was
loaded: dated by its load time alone, everything cached from it would be refused. It counts as
read when its own invalidation completed, but only if no other invalidation of its tags completed
between its load and its own: another editor's commit in between would otherwise be hidden.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.template import Context, Template

from django_tagcache import TagCache, cached
from django_tagcache.core import metrics, protections
from tests.test_freshness import edit
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)

CARD = Template(
    '{% load tagcache %}{% tagcache 600 "own-card" product.pk tags=product %}'
    "{{ product.name }}:{{ product.price }}{% endtagcache %}"
)


@cached(timeout=600, tags=lambda product: [product])
def summary(product: Product) -> str:
    return f"{product.name}:{product.price}"  # from the caller's instance


# The in-process store and both Redis clients; on Redis Cluster every invalidation drains, and
# an instance is never dated by its own (see docs/concepts.md, "Read fences").
@pytest.fixture(params=["default", "builtin", "locmem"])
def alias(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": request.param}
    return str(request.param)


def stored(work: Any) -> int:
    """How many entries ``work()`` stored."""
    before = metrics.snapshot()["stores"]
    work()
    return int(metrics.snapshot()["stores"] - before)


def database(pk: int) -> str:
    return summary.__wrapped__(Product.objects.get(pk=pk))


def cached_summary(alias: str, product: Product) -> Any:
    return TagCache(alias).get(summary.cache_key(product))


def new_product(name: str = "old") -> int:
    return Product.objects.create(name=name, category=Category.objects.create(name="a"), price=1).pk


@pytest.mark.parametrize("atomic", [False, True])
def test_an_instance_that_saved_itself_is_cached_from(alias: str, atomic: bool) -> None:
    product = Product.objects.get(pk=new_product())
    product.name = "new"
    with transaction.atomic() if atomic else _nothing():
        product.save()
    assert stored(lambda: summary(product)) == 1
    assert cached_summary(alias, product) == "new:1" == database(product.pk)
    assert stored(lambda: CARD.render(Context({"product": product}))) == 1


def test_an_instance_from_create_is_cached_from(alias: str) -> None:
    product = Product.objects.create(name="made", category=Category.objects.create(name="a"), price=2)
    assert stored(lambda: summary(product)) == 1
    assert cached_summary(alias, product) == "made:2"


def test_an_edit_committed_between_load_and_save_still_refuses(alias: str) -> None:
    pk = new_product()
    product = Product.objects.get(pk=pk)
    edit(pk, price=5)  # another editor: committed and invalidated before our save
    product.name = "mine"
    product.save(update_fields=["name"])  # our instance still holds the old price
    assert database(pk) == "mine:5"
    assert stored(lambda: summary(product)) == 0
    assert cached_summary(alias, product) is None


def test_an_edit_invalidated_between_our_commit_and_our_invalidation_still_refuses(alias: str) -> None:
    pk = new_product()
    product = Product.objects.get(pk=pk)
    with transaction.atomic():
        # Registered first, so it runs first once we commit: another editor's change commits and
        # is invalidated after our commit and before our own invalidation.
        transaction.on_commit(lambda: edit(pk, name="theirs"))
        product.name = "mine"
        product.save()
    assert database(pk) == "theirs:1"
    assert stored(lambda: summary(product)) == 0
    assert cached_summary(alias, product) is None


def test_a_save_that_rolls_back_does_not_date_the_instance(alias: str) -> None:
    pk = new_product()
    product = Product.objects.get(pk=pk)
    edit(pk, price=7)  # after our load: our instance is out of date whatever happens next

    class Undo(Exception):
        pass

    with transaction.atomic():
        try:
            with transaction.atomic():
                product.name = "rolled back"
                product.save(update_fields=["name"])
                raise Undo
        except Undo:
            pass
        Product.objects.filter(pk=pk).update(name="outer")
    assert database(pk) == "outer:7"
    assert stored(lambda: summary(product)) == 0


def test_dated_blindly_by_its_own_save_an_instance_would_store_a_stale_value(alias: str) -> None:
    """The check is needed: without it, the editor's price is lost from the cache's point of view."""
    pk = new_product()
    product = Product.objects.get(pk=pk)
    edit(pk, price=5)
    product.name = "mine"
    with protections.switched_off("own_save_check"):
        product.save(update_fields=["name"])
    assert stored(lambda: summary(product)) == 1
    assert cached_summary(alias, product) == "mine:1" != database(pk)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
