"""Concurrent readers and writers on a real database: once the writers stop, nothing cached is stale."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from django.db import connection, transaction

from django_tagcache import cached, tagcache
from tests.testapp.models import Category, Product

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("DATABASE_URL"), reason="threads need a real database server"),
]


@cached(timeout=600, tags=lambda pk: [f"shop.product:{pk}"])
def price_of(pk: int) -> int:
    price = Product.objects.get(pk=pk).price
    # A slow computation: some reader is nearly always between reading the row and writing the
    # cache, so the last write of a round lands inside one; that is the race under test.
    time.sleep(0.01 + random.random() / 100)
    return int(price)


def run_round(pks: list[int], writes: int, errors: list[BaseException]) -> None:
    """Readers run while writers commit ``writes`` updates each; returns once all have stopped."""
    stop = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(writes):
                with transaction.atomic():
                    product = Product.objects.select_for_update().get(pk=rng.choice(pks))
                    product.price += 1
                    product.save()
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                price_of(rng.choice(pks))
        except BaseException as exc:  # pragma: no cover - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    readers = [threading.Thread(target=reader, args=(random.random(),)) for _ in range(6)]
    writers = [threading.Thread(target=writer, args=(random.random(),)) for _ in range(3)]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()


def stale_entries(pks: list[int]) -> list[tuple[int, int, int]]:
    stale = []
    for pk in pks:
        cached_price = tagcache.get(price_of.cache_key(pk))
        actual = Product.objects.get(pk=pk).price
        if cached_price is not None and cached_price != actual:
            stale.append((pk, cached_price, actual))
    return stale


def test_no_stale_value_survives_concurrent_writes() -> None:
    """Ten rounds: readers and writers race, the writers stop, then every cached price must match."""
    category = Category.objects.create(name="c")
    pks = [Product.objects.create(name=str(i), category=category).pk for i in range(3)]
    errors: list[BaseException] = []
    stale: list[tuple[int, int, int]] = []
    for _ in range(10):
        run_round(pks, writes=15, errors=errors)
        stale += stale_entries(pks)
    assert not errors
    assert sum(Product.objects.values_list("price", flat=True)) == 10 * 3 * 15
    assert stale == []
