"""Own-save dating when the other change to the row is made in the same transaction.

One transaction, one invalidation at commit: a change to the row made in that transaction by
someone other than the instance (a QuerySet.update(), another instance of the same row) shows
no "previous" completion between the load and the save's own, so the instance is dated by the
commit's invalidation although it does not hold the row as stored.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from tests.test_own_saves import cached_summary, database, new_product, stored, summary
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["default", "builtin", "locmem"])
def alias(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": request.param}
    return str(request.param)


def test_an_update_after_the_save_in_the_same_transaction_is_not_hidden(alias: str) -> None:
    pk = new_product()
    product = Product.objects.get(pk=pk)
    with transaction.atomic():
        product.name = "mine"
        product.save()
        Product.objects.filter(pk=pk).update(price=9)  # same transaction, after our save
    assert database(pk) == "mine:9"
    stored(lambda: summary(product))
    # Expected: refused (nothing cached), or the row as stored. Observed: "mine:1" is cached.
    assert cached_summary(alias, product) in (None, database(pk))


def test_another_instance_of_the_row_saved_in_the_same_transaction_is_not_hidden(alias: str) -> None:
    pk = new_product()
    mine = Product.objects.get(pk=pk)
    with transaction.atomic():
        theirs = Product.objects.get(pk=pk)
        theirs.price = 9
        theirs.save()
        mine.name = "mine"
        mine.save(update_fields=["name"])  # mine still holds price 1
    assert database(pk) == "mine:9"
    stored(lambda: summary(mine))
    assert cached_summary(alias, mine) in (None, database(pk))


def test_a_value_the_database_normalizes_on_save_is_not_cached_as_assigned(alias: str) -> None:
    """The instance keeps the Python value it was given ("07" from a form), the row holds 7: after
    the save the instance does not hold the row as stored, so it cannot be dated by its save."""
    pk = new_product()
    product = Product.objects.get(pk=pk)
    product.price = "07"  # as posted; IntegerField stores int("07")
    product.save()
    assert database(pk) == "old:7"
    stored(lambda: summary(product))
    # Expected: refused, or "old:7". Observed: "old:07", a value no read of the row gives.
    assert cached_summary(alias, product) in (None, database(pk))
