"""An instance counts as loaded when the query that returned its row started, not when it was built.

The database takes its snapshot when the query executes (or when a server-side cursor is
declared); the instance is built afterwards. An editor that commits in between must refuse what
is cached from the instance.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from django_tagcache import invalidate_tags
from django_tagcache.core import metrics
from tests.dbthreads import in_another_thread
from tests.test_freshness import card, edit
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _on_alias(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias}  # CLOCK_SKEW_MARGIN 0: exact


def test_an_edit_committed_right_after_the_select_refuses_the_instance(alias: str) -> None:
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    done: list[bool] = []

    def editor_after_execute(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if not done and sql.lstrip().upper().startswith("SELECT") and Product._meta.db_table in sql:
            done.append(True)  # the snapshot is taken: an editor commits before the rows are built
            if connection.vendor == "sqlite":
                # SQLite locks the table while its rows are read, so no edit can commit here:
                # the editor's invalidation alone stands for it.
                invalidate_tags(f"shop.product:{pk}")
            else:
                in_another_thread(lambda: edit(pk, name="new"))
        return result

    with connection.execute_wrapper(editor_after_execute):
        loaded = Product.objects.get(pk=pk)
    assert done
    stores = metrics.snapshot()["stores"]
    assert card(loaded) == loaded.name
    assert metrics.snapshot()["stores"] == stores  # refused: the tag moved after the snapshot
    fresh = Product.objects.get(pk=pk)
    assert card(fresh) == fresh.name


def test_rows_of_a_server_side_cursor_count_as_read_when_it_was_opened(alias: str) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("a server-side cursor (iterator() on PostgreSQL) reads its rows as of its DECLARE")
    category = Category.objects.create(name="a")
    first, second = (Product.objects.create(name=n, category=category).pk for n in ("one", "two"))
    shown = {}
    for product in Product.objects.filter(pk__in=[first, second]).order_by("pk").iterator(chunk_size=1):
        if product.pk == first:  # while row 1 is processed, an editor changes row 2
            in_another_thread(lambda: edit(second, name="two, edited"))
            assert Category.objects.count() == 1  # another query, after the edit, in the loop
        shown[product.pk] = card(product)
    assert shown == {first: "one", second: "two"}  # row 2 as of the DECLARE
    assert card(Product.objects.get(pk=second)) == "two, edited"
