"""Load times inside a REPEATABLE READ (or SERIALIZABLE) transaction.

There the database's snapshot is taken at the transaction's first query, not at the query that
returns the row: an editor that commits and invalidates between the two is invisible to the
instance, yet the instance's load time (the start of its own query) is after that invalidation.
Run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/<name>.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from django_tagcache.core import metrics
from tests.dbthreads import in_another_thread
from tests.test_freshness import card, edit
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _on_alias(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias}


def test_a_row_read_from_an_older_snapshot_is_not_cached(alias: str) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (REPEATABLE READ set per transaction)")
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        assert Category.objects.count() == 1  # the transaction's snapshot is taken here
        in_another_thread(lambda: edit(pk, name="new"))  # committed and invalidated
        loaded = Product.objects.get(pk=pk)  # built now, from the snapshot: the old row
        assert loaded.name == "old"
        stores = metrics.snapshot()["stores"]
        assert card(loaded) == "old"
        # Expected: refused, the tag moved after the data was read. Observed: stored.
        assert metrics.snapshot()["stores"] == stores
    assert card(Product.objects.get(pk=pk)) == "new"  # observed: "old", served from the cache
