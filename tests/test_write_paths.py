"""Write paths that must invalidate the row as stored, whatever the instance in hand remembers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest
from django.core.signals import request_finished
from django.db import transaction
from django.db.models import F, signals

from django_tagcache import tagcache
from django_tagcache.orm import handlers
from tests.counting import count
from tests.testapp.models import Category, Label, Placement, Product, Restaurant, Shelf

pytestmark = pytest.mark.django_db(transaction=True)


def listing(category: Category) -> list[str]:
    """The names of a category's products, cached under the category's tag."""
    return tagcache.get_or_set(  # type: ignore[no-any-return]
        f"list:{category.pk}",
        lambda: sorted(Product.objects.filter(category=category).values_list("name", flat=True)),
        tags=[f"category:{category.pk}"],
    )


def labelled(category: Category) -> list[tuple[str, list[str]]]:
    """The products of a category with their labels, cached under the category's tag."""

    def compute() -> list[tuple[str, list[str]]]:
        products = Product.objects.filter(category=category).order_by("name")
        return [(p.name, sorted(p.labels.values_list("name", flat=True))) for p in products]

    return tagcache.get_or_set(f"labelled:{category.pk}", compute, tags=[f"category:{category.pk}"])  # type: ignore[no-any-return]


def on_shelf(shelf: Shelf) -> list[str]:
    """The names of the products on a shelf, cached under the shelf's tag."""
    return tagcache.get_or_set(  # type: ignore[no-any-return]
        f"shelf:{shelf.pk}",
        lambda: sorted(Product.objects.filter(shelves=shelf).values_list("name", flat=True)),
        tags=[f"shelf:{shelf.pk}"],
    )


@pytest.mark.parametrize("outbox", [False, True])
def test_deleting_an_out_of_date_instance_invalidates_the_row_as_stored(settings: Any, outbox: bool) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "OUTBOX": outbox}
    a, b = Category.objects.create(name="a"), Category.objects.create(name="b")
    pk = Product.objects.create(name="p", category=a).pk
    mine = Product.objects.get(pk=pk)
    other = Product.objects.get(pk=pk)
    other.category = b
    other.save()
    assert listing(b) == ["p"]
    mine.delete()  # still believes the row is in a
    assert listing(b) == []


def test_saving_an_out_of_date_through_row_invalidates_the_rows_it_linked_as_stored() -> None:
    top, bottom = Shelf.objects.create(name="top"), Shelf.objects.create(name="bottom")
    product = Product.objects.create(name="p", category=Category.objects.create(name="c"))
    pk = Placement.objects.create(shelf=top, product=product).pk
    mine = Placement.objects.get(pk=pk)
    other = Placement.objects.get(pk=pk)
    other.shelf = bottom
    other.save()
    assert on_shelf(bottom) == ["p"]
    mine.position = 5
    mine.save()  # puts it back on the top shelf: the bottom one loses it
    assert on_shelf(bottom) == []


def test_deleting_an_out_of_date_through_row_invalidates_the_rows_it_linked_as_stored() -> None:
    top, bottom = Shelf.objects.create(name="top"), Shelf.objects.create(name="bottom")
    product = Product.objects.create(name="p", category=Category.objects.create(name="c"))
    pk = Placement.objects.create(shelf=top, product=product).pk
    mine = Placement.objects.get(pk=pk)
    other = Placement.objects.get(pk=pk)
    other.shelf = bottom
    other.save()
    assert on_shelf(bottom) == ["p"]
    mine.delete()
    assert on_shelf(bottom) == []


def test_an_m2m_change_through_an_out_of_date_instance_invalidates_the_row_as_stored() -> None:
    a, b = Category.objects.create(name="a"), Category.objects.create(name="b")
    red = Label.objects.create(name="red")
    pk = Product.objects.create(name="p", category=a).pk
    mine = Product.objects.get(pk=pk)
    other = Product.objects.get(pk=pk)
    other.category = b
    other.save()
    assert labelled(b) == [("p", [])]
    mine.labels.add(red)  # the instance still believes the row is in a
    assert labelled(b) == [("p", ["red"])]


def priced(price: int) -> list[str]:
    """The names of the products at a price, cached under the price's tag."""
    return tagcache.get_or_set(  # type: ignore[no-any-return]
        f"price:{price}",
        lambda: sorted(Product.objects.filter(price=price).values_list("name", flat=True)),
        tags=[f"price:{price}"],
    )


@pytest.mark.parametrize("atomic", [False, True])
def test_an_expression_invalidates_the_value_stored(invalidated: list[set[str]], atomic: bool) -> None:
    product = Product.objects.create(name="p", price=5, category=Category.objects.create(name="c"))
    assert priced(6) == []
    invalidated.clear()
    product.price = F("price") + 1
    with transaction.atomic() if atomic else nullcontext():
        product.save()
    assert priced(6) == ["p"]
    assert {"price:5", "price:6"} <= set().union(*invalidated)
    assert not [tag for tag in set().union(*invalidated) if "F(" in tag]
    product.refresh_from_db()
    product.price = 9  # the next save knows the row stood at 6
    product.save()
    assert "price:6" in invalidated[-1]


@pytest.fixture
def warm() -> None:
    tagcache.set("warm", 1, tags=["warm"])
    tagcache.invalidate_tags("warm")
    tagcache.store.scripts.load()


def test_a_multi_table_save_in_autocommit_costs_one_round_trip(warm: None) -> None:
    restaurant = Restaurant.objects.create(name="R", city="Oslo", cuisine="thai")
    restaurant = Restaurant.objects.get(pk=restaurant.pk)
    restaurant.cuisine = "lao"
    restaurant.city = "Bergen"
    with count() as tally:
        restaurant.save()
    assert tally.round_trips == 1


@contextmanager
def failing_receiver_first() -> Iterator[None]:
    """Another app's post_save receiver for Product, connected before this app's, that raises."""

    def explode(**kwargs: object) -> None:
        raise RuntimeError("another app's receiver")

    handlers.disconnect(Product)
    signals.post_save.connect(explode, sender=Product, dispatch_uid="tests.explode")
    handlers.connect(Product)
    try:
        yield
    finally:
        signals.post_save.disconnect(sender=Product, dispatch_uid="tests.explode")


@pytest.mark.parametrize("end", ["request", "next write"])
def test_a_receiver_that_raises_before_ours_still_invalidates(invalidated: list[set[str]], end: str) -> None:
    a, b = Category.objects.create(name="a"), Category.objects.create(name="b")
    product = Product.objects.create(name="p", category=a)
    assert listing(a) == ["p"]
    assert listing(b) == []
    product.category = b
    with failing_receiver_first(), pytest.raises(RuntimeError):
        product.save()  # autocommit: the row is committed, this app's post_save never ran
    if end == "request":
        request_finished.send(sender=None)  # the exception ended the request
    else:  # the next write on the table finds the save over (and is not held back by it)
        invalidated.clear()
        Product.objects.filter(pk=-1).update(price=1)
        assert {"shop.product"} in invalidated
    assert listing(a) == []
    assert listing(b) == ["p"]


def test_a_receiver_that_raises_inside_a_transaction_still_lets_the_commit_invalidate() -> None:
    a, b = Category.objects.create(name="a"), Category.objects.create(name="b")
    product = Product.objects.create(name="p", category=a)
    assert listing(a) == ["p"]
    assert listing(b) == []
    product.category = b
    with transaction.atomic(), failing_receiver_first(), pytest.raises(RuntimeError):
        product.save()
    assert listing(a) == []
    assert listing(b) == ["p"]
