"""The SQL watcher finds the table of every write statement Django's backends generate."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections

from django_tagcache.caching import loadtimes
from django_tagcache.orm import dml, sqlwatch
from tests.testapp.models import Category, Label, Product

STATEMENTS = [
    # Plain DML, each backend's quoting.
    ('INSERT INTO "shop_product" ("name") VALUES (%s)', ("shop_product",)),
    ("INSERT INTO `shop_product` (`name`) VALUES (%s)", ("shop_product",)),
    ("insert into shop_product (name) values (?)", ("shop_product",)),
    ('UPDATE "shop_product" SET "price" = %s WHERE "shop_product"."id" = %s', ("shop_product",)),
    ('DELETE FROM "shop_product" WHERE "shop_product"."id" IN (%s)', ("shop_product",)),
    # bulk_create(ignore_conflicts=True / update_conflicts=True).
    ('INSERT OR IGNORE INTO "shop_product" ("name") VALUES (%s)', ("shop_product",)),
    ('INSERT OR REPLACE INTO "shop_product" ("name") VALUES (%s)', ("shop_product",)),
    ("INSERT IGNORE INTO `shop_product` (`name`) VALUES (%s)", ("shop_product",)),
    ('INSERT INTO "shop_product" ("name") VALUES (%s) ON CONFLICT DO NOTHING', ("shop_product",)),
    ('INSERT INTO "t" ("a") VALUES (%s) ON CONFLICT("a") DO UPDATE SET "b" = EXCLUDED."b"', ("t",)),
    ("INSERT INTO `t` (`a`) VALUES (%s) ON DUPLICATE KEY UPDATE `b` = VALUES(`b`)", ("t",)),
    ("REPLACE INTO `shop_product` (`name`) VALUES (%s)", ("shop_product",)),
    ("INSERT LOW_PRIORITY IGNORE INTO `t` (`a`) VALUES (1)", ("t",)),
    # MySQL/MariaDB multi-table forms: the target(s) come before FROM, or all joined tables update.
    (
        "DELETE `shop_product_labels` FROM `shop_product_labels` INNER JOIN `shop_label` ON (x = y) WHERE 1",
        ("shop_product_labels",),
    ),
    ("DELETE `a`, `b` FROM `a` INNER JOIN `b` ON (`a`.`id` = `b`.`a_id`)", ("a", "b")),
    ("DELETE QUICK IGNORE FROM `t` WHERE 1", ("t",)),
    ("UPDATE `a` INNER JOIN `b` ON (`a`.`id` = `b`.`a_id`) SET `a`.`x` = 1", ("a", "b")),
    ("UPDATE LOW_PRIORITY IGNORE `t` SET `x` = 1 ORDER BY `id` ASC", ("t",)),
    ("UPDATE a, b SET a.x = b.y WHERE a.id = b.id", ("a", "b")),
    ('UPDATE OR IGNORE "t" SET "x" = 1', ("t",)),
    # Schema-qualified and odd names, comments and whitespace in front.
    ('UPDATE "public"."shop_product" SET "price" = 1', ("shop_product",)),
    ("DELETE FROM `test`.`shop product` WHERE 1", ("shop product",)),
    ('  \n\t/* by the admin */ -- a note\n  INSERT INTO "t" VALUES (1)', ("t",)),
    ("/* a */ /* b */ UPDATE t SET x = 1", ("t",)),
    # Not writes.
    ('SELECT "id" FROM "shop_product"', ()),
    ('SAVEPOINT "s1"', ()),
    ("RELEASE SAVEPOINT s1", ()),
    ("COMMIT", ()),
    ("/* UPDATE t SET x = 1 */ SELECT 1", ()),
    ("WITH x AS (SELECT 1) SELECT * FROM x", ()),
    ("", ()),
]


@pytest.mark.parametrize(("sql", "tables"), STATEMENTS)
def test_the_tables_a_statement_writes(sql: str, tables: tuple[str, ...]) -> None:
    assert dml.written_tables(sql) == tables


@pytest.mark.django_db(transaction=True)
def test_bulk_create_ignoring_conflicts_invalidates_the_model_tag(invalidated: list[set[str]]) -> None:
    cat = Category.objects.create(name="c")
    invalidated.clear()
    Product.objects.bulk_create([Product(name="p", category=cat)], ignore_conflicts=True)
    assert invalidated == [{"shop.product"}]


@pytest.mark.django_db(transaction=True)
def test_a_joined_delete_on_an_intermediate_table_invalidates_both_sides(invalidated: list[set[str]]) -> None:
    product = Product.objects.create(name="p", category=Category.objects.create(name="c"))
    red = Label.objects.create(name="red")
    product.labels.add(red)
    invalidated.clear()
    # A filter across a join: MariaDB deletes with DELETE `t` FROM `t` INNER JOIN ...
    Product.labels.through.objects.filter(label__name="red").delete()
    assert {"shop.product", "shop.label"} <= set().union(*invalidated)


def _passthrough(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    return execute(sql, params, many, context)


@pytest.mark.django_db(transaction=True)
def test_a_wrapper_block_in_which_a_connection_opened_leaves_ours(invalidated: list[set[str]]) -> None:
    """Django's ``execute_wrapper()`` block removes the last wrapper of the list when it ends.
    Ours are added when a thread's connection is first created: when that happens inside someone
    else's block (a middleware logging a request's queries, the first request of a new thread),
    the block must still remove its own wrapper, not ours, or raw writes and query starts go unseen
    for as long as the connection lives."""
    cat = Category.objects.create(name="c")
    seen: dict[str, Any] = {}

    def request_in_a_new_thread() -> None:  # a new thread: a new connection object, no wrappers yet
        try:
            with connection.execute_wrapper(_passthrough):
                Category.objects.count()  # the first query: connection_created installs ours
            seen["wrappers"] = list(connection.execute_wrappers)
            invalidated.clear()
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {Category._meta.db_table} SET name = %s WHERE id = %s", ["d", cat.pk])
        finally:
            connections.close_all()

    thread = threading.Thread(target=request_in_a_new_thread)
    thread.start()
    thread.join()
    assert _passthrough not in seen["wrappers"]
    assert sqlwatch.watch in seen["wrappers"]
    assert loadtimes.record in seen["wrappers"]
    assert {"shop.category"} <= set().union(*invalidated)
