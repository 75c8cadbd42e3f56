"""What an instance must satisfy to be dated by its own save, beyond the previous-completion check.

Its save must be the only write of its tags in its transaction (one invalidation at commit shows
no other change of the row), and every value it holds must be the value the database stores.
Refusing to date is always safe; these tests also hold the cases that must still be dated.
"""

from __future__ import annotations

import datetime
import decimal
import warnings
from typing import Any

import pytest
from django.db import models, transaction
from django.utils.safestring import mark_safe

from django_tagcache.core import protections
from django_tagcache.orm.ownsaves import holds_as_stored
from tests.test_own_saves import cached_summary, database, new_product, stored, summary
from tests.testapp.models import Product


@pytest.fixture(params=["default", "locmem"])
def alias(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": request.param}
    return str(request.param)


@pytest.mark.django_db(transaction=True)
def test_a_delete_of_the_row_after_the_save_in_the_same_transaction_is_not_hidden(alias: str) -> None:
    pk = new_product()
    product = Product.objects.get(pk=pk)
    with transaction.atomic():
        product.name = "mine"
        product.save()
        Product.objects.filter(pk=pk).delete()
    assert not Product.objects.filter(pk=pk).exists()
    stored(lambda: summary(product))
    assert cached_summary(alias, product) is None  # nothing cached for a row that is gone


@pytest.mark.django_db(transaction=True)
def test_its_own_saves_repeated_in_one_transaction_still_date_it(alias: str) -> None:
    product = Product.objects.get(pk=new_product())
    with transaction.atomic():
        product.name = "mine"
        product.save()
        product.price = 3
        product.save()
    assert stored(lambda: summary(product)) == 1
    assert cached_summary(alias, product) == "mine:3" == database(product.pk)


@pytest.mark.django_db(transaction=True)
def test_without_the_batch_check_an_update_after_the_save_is_hidden(alias: str) -> None:
    """The check is needed: switched off, the update of the same transaction is lost."""
    pk = new_product()
    product = Product.objects.get(pk=pk)
    with protections.switched_off("own_save_alone"), transaction.atomic():
        product.name = "mine"
        product.save()
        Product.objects.filter(pk=pk).update(price=9)
    assert stored(lambda: summary(product)) == 1
    assert cached_summary(alias, product) == "mine:1" != database(pk)


@pytest.mark.django_db(transaction=True)
def test_without_the_value_check_a_normalized_value_is_cached(alias: str) -> None:
    pk = new_product()
    product = Product.objects.get(pk=pk)
    product.price = "07"
    with protections.switched_off("own_save_values"):
        product.save()
    assert stored(lambda: summary(product)) == 1
    assert cached_summary(alias, product) == "old:07" != database(pk)


@pytest.mark.django_db
def test_a_value_of_another_type_than_the_field_reads_back_is_not_held_as_stored() -> None:
    product = Product.objects.get(pk=new_product())
    assert holds_as_stored(product)
    for name, value in [
        ("price", "7"),
        ("price", 7.0),
        ("price", True),
        ("name", mark_safe("old")),
        ("category_id", str(product.category_id)),
    ]:
        original = getattr(product, name)
        setattr(product, name, value)
        assert not holds_as_stored(product), (name, value)
        setattr(product, name, original)
    assert holds_as_stored(product)


@pytest.mark.parametrize(
    ("field", "value", "held"),
    [
        (models.DecimalField(max_digits=6, decimal_places=2), decimal.Decimal("1.50"), True),
        (models.DecimalField(max_digits=6, decimal_places=2), decimal.Decimal("1.5"), False),  # reads 1.50
        (models.DecimalField(max_digits=6, decimal_places=2), decimal.Decimal("1.555"), False),  # 1.56
        (models.DecimalField(max_digits=6, decimal_places=2), decimal.Decimal("NaN"), False),
        (models.DateTimeField(), datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), True),
        (
            models.DateTimeField(),
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            False,  # the same instant, read back in UTC
        ),
        (models.DateTimeField(), datetime.datetime(2026, 1, 2, 3, 4, 5), False),  # naive: made aware
        (models.DateField(), datetime.datetime(2026, 1, 2, 3, 4, 5), False),  # stored as a date
        (models.DateField(), datetime.date(2026, 1, 2), True),
        (models.FloatField(), 1.5, True),
        (models.FloatField(), float("nan"), False),
        (models.BooleanField(), 1, False),
        (models.JSONField(), {"b": 1, "a": 2}, False),  # key order, tuples: not known to round-trip
        (models.CharField(max_length=5), None, False),  # NOT NULL: never stored as None
        (models.CharField(max_length=5, null=True), None, True),
    ],
)
def test_which_values_are_stored_as_held(
    settings: Any, field: models.Field[Any, Any], value: Any, held: bool
) -> None:
    from django_tagcache.orm.ownsaves import _stored_as_is

    settings.USE_TZ = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a naive datetime while USE_TZ is on
        assert _stored_as_is(field, value) is held


class _Shouting(models.CharField):  # type: ignore[type-arg]
    """A text field that converts on the way in: its values are not stored as held."""

    def get_prep_value(self, value: Any) -> Any:
        return None if value is None else str(value).upper()


@pytest.mark.parametrize(
    ("field", "plain"),
    [
        (models.IntegerField(), int),
        (models.BigAutoField(primary_key=True), int),
        (models.CharField(max_length=5), str),
        (models.TextField(), str),
        (models.PositiveIntegerField(), None),  # not in the short list: full check
        (models.BooleanField(), None),
        (_Shouting(max_length=5), None),  # a subclass may convert: full check
    ],
)
def test_the_values_that_skip_the_conversion_calls_are_those_the_full_check_holds(
    field: models.Field[Any, Any], plain: type | None
) -> None:
    """The fast path of holds_as_stored() must agree with the full check wherever it applies."""
    from django_tagcache.orm.ownsaves import _plain_type, _stored_as_is

    assert _plain_type(field) is plain
    if plain is not None:
        for value in [0, 7, -3, 2**40] if plain is int else ["", "abc", "Ünï", "07"]:
            assert _stored_as_is(field, value)
    assert not _stored_as_is(_Shouting(max_length=5), "abc")


def test_a_foreign_key_skips_the_conversion_calls_as_its_target_field_does() -> None:
    from django_tagcache.orm.ownsaves import _plain_type

    assert _plain_type(Product._meta.get_field("category")) is int
    assert _plain_type(Product._meta.get_field("name")) is str
    assert _plain_type(Product._meta.get_field("price")) is int
