"""A save invalidates the tags of the row as stored when its UPDATE runs, in autocommit too.

Two editors hold the same product. Editor 2 starts saving it (c) and stops between its read of
the stored row and its UPDATE; there editor 1 saves it (a -> b) and a listing of b is cached.
Whatever editor 2 read, the database then moves the row b -> c: editor 2 must invalidate b, or
the listing of b keeps the product for good. Editor 1 runs in a thread of its own, on a
connection that fails at once where it would wait for a lock, so that "editor 1 could not slip in"
is an error it reports, not a wait the test would have to time.

Runs on the default database when it is a server (PostgreSQL or MariaDB: DATABASE_URL, set by
.ci/run) and on SQLite in a file (the in-memory test databases share a cache, locked per table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connections, transaction
from django.test.utils import CaptureQueriesContext

from django_tagcache import TagCache
from django_tagcache.core import protections
from tests.dbthreads import in_another_thread
from tests.testapp.models import Category, Placement, Product, Shelf

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sqlitefile"])


@pytest.fixture(params=["default", "sqlitefile", "sqlitefile-wal"])
def db(request: pytest.FixtureRequest) -> Iterator[str]:
    """The database alias the editors use: SQLite in its default journal mode and in WAL mode
    (where a reader does not keep a writer from committing: a transaction that read before
    another's commit then fails to write, unless it took the write lock first)."""
    if request.param == "default" and connections["default"].vendor == "sqlite":
        pytest.skip("the default database is SQLite in memory: the file database stands for SQLite")
    if request.param != "sqlitefile-wal":
        yield str(request.param)
        return
    with connections["sqlitefile"].cursor() as cursor:
        cursor.execute("PRAGMA journal_mode = WAL")  # a property of the file, kept by later connections
    yield "sqlitefile"
    connections.close_all()
    with connections["sqlitefile"].cursor() as cursor:
        cursor.execute("PRAGMA journal_mode = DELETE")


def _fail_instead_of_waiting(using: str) -> None:
    """This thread's connection raises where it would wait for a lock held by another."""
    connection = connections[using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET lock_timeout = '1ms'")
        elif connection.vendor == "mysql":
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 0")
        else:
            cursor.execute("PRAGMA busy_timeout = 0")


@contextmanager
def _before_its_update(using: str, work: Callable[[], None], table: str = "") -> Iterator[list[str]]:
    """Run ``work`` once, when this thread's connection is about to run an UPDATE of ``table``
    (of the products by default)."""
    table = table or Product._meta.db_table
    ran: list[str] = []

    def hook(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        if not ran and sql.lstrip()[:6].upper() == "UPDATE" and table in sql.split("SET")[0]:
            ran.append(sql)
            work()
        return execute(sql, params, many, context)

    with connections[using].execute_wrapper(hook):
        yield ran


def _listing(tc: TagCache, category: Category, using: str) -> list[str]:
    return tc.get_or_set(  # type: ignore[no-any-return]
        f"list:{category.pk}",
        lambda: sorted(Product.objects.using(using).filter(category=category).values_list("name", flat=True)),
        tags=[f"category:{category.pk}"],
    )


def _no_stale_listing(tc: TagCache, categories: list[Category], using: str) -> None:
    for category in categories:
        truth = sorted(Product.objects.using(using).filter(category=category).values_list("name", flat=True))
        assert tc.get(f"list:{category.pk}", default=truth) == truth, f"stale listing of {category.name}"


def test_an_autocommit_save_invalidates_what_a_save_committed_before_its_update(db: str) -> None:
    _two_editors(db, manual=False)


def test_a_save_in_a_manual_transaction_invalidates_what_a_save_committed_before_its_update(db: str) -> None:
    _two_editors(db, manual=True)  # autocommit off, outside atomic(): the save's read is in it


def _two_editors(db: str, *, manual: bool) -> None:
    tc = TagCache("default")
    a, b, c = (Category.objects.using(db).create(name=name) for name in "abc")
    pk = Product.objects.using(db).create(name="p", category=a).pk
    second = Product.objects.using(db).get(pk=pk)
    outcome: list[str] = []

    def editor_one() -> None:
        _fail_instead_of_waiting(db)
        first = Product.objects.using(db).get(pk=pk)
        first.category = b
        try:
            first.save()  # autocommit: written, committed and invalidated on return
        except OperationalError:
            outcome.append("waits")  # editor 2 holds the row: this save comes after it
            return
        outcome.append("saved")
        assert _listing(tc, b, db) == ["p"]

    second.category = c  # still believes the row is in a
    connection = connections[db]
    if manual:
        connection.set_autocommit(False)
    try:
        with _before_its_update(db, lambda: in_another_thread(editor_one)) as ran:
            second.save()
    except BaseException:
        if manual:
            connection.rollback()
            connection.set_autocommit(True)
        raise
    if manual:
        connection.commit()
        connection.set_autocommit(True)  # Django runs the transaction's commit hooks here
    assert ran, "the hook never ran: no UPDATE of the product"
    assert not connections[db].in_atomic_block
    assert connections[db].get_autocommit()
    _no_stale_listing(tc, [a, b, c], db)  # observed before the fix: b lists "p", now in c
    assert outcome == ["waits"]
    in_another_thread(lambda: _move(pk, b, db))  # editor 1 saves again, now after editor 2
    assert _listing(tc, b, db) == ["p"]
    _no_stale_listing(tc, [a, b, c], db)


def _on_shelf(tc: TagCache, shelf: Shelf, using: str) -> list[str]:
    return tc.get_or_set(  # type: ignore[no-any-return]
        f"shelf:{shelf.pk}",
        lambda: sorted(Product.objects.using(using).filter(shelves=shelf).values_list("name", flat=True)),
        tags=[f"shelf:{shelf.pk}"],
    )


def test_an_autocommit_save_of_a_through_row_invalidates_the_rows_it_linked_before_its_write(
    db: str,
) -> None:
    tc = TagCache("default")
    top, bottom = Shelf.objects.using(db).create(name="top"), Shelf.objects.using(db).create(name="bottom")
    product = Product.objects.using(db).create(name="p", category=Category.objects.using(db).create(name="c"))
    pk = Placement.objects.using(db).create(shelf=top, product=product).pk
    mine = Placement.objects.using(db).get(pk=pk)
    outcome: list[str] = []

    def editor_one() -> None:
        _fail_instead_of_waiting(db)
        other = Placement.objects.using(db).get(pk=pk)
        other.shelf = bottom
        try:
            other.save()
        except OperationalError:
            outcome.append("waits")
            return
        outcome.append("saved")
        assert _on_shelf(tc, bottom, db) == ["p"]

    mine.position = 5  # puts it back on the top shelf, as loaded: the bottom one loses it
    with _before_its_update(db, lambda: in_another_thread(editor_one), Placement._meta.db_table) as ran:
        mine.save()
    assert ran, "the hook never ran: no UPDATE of the placement"
    for shelf in (top, bottom):
        truth = sorted(Product.objects.using(db).filter(shelves=shelf).values_list("name", flat=True))
        assert tc.get(f"shelf:{shelf.pk}", default=truth) == truth, f"stale listing of shelf {shelf.name}"
    assert outcome == ["waits"]


def _move(pk: int, category: Category, using: str) -> None:
    product = Product.objects.using(using).get(pk=pk)
    product.category = category
    product.save()


def test_with_the_stored_row_protection_off_the_autocommit_race_shows_a_stale_listing(db: str) -> None:
    with protections.switched_off("stored_row"), pytest.raises(AssertionError, match="stale listing of b"):
        test_an_autocommit_save_invalidates_what_a_save_committed_before_its_update(db)


def test_an_autocommit_save_reads_the_row_locked_with_its_update_and_commits(db: str) -> None:
    a, b = Category.objects.using(db).create(name="a"), Category.objects.using(db).create(name="b")
    product = Product.objects.using(db).get(pk=Product.objects.using(db).create(name="p", category=a).pk)
    product.category = b
    connection = connections[db]
    with CaptureQueriesContext(connection) as queries:
        product.save()
    # Django lists its own BEGIN and COMMIT (not SQLite's BEGIN IMMEDIATE, sent to the driver); on
    # PostgreSQL the connection's first transaction asks its isolation level once.
    sqls = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"] not in ("BEGIN", "COMMIT", "SHOW default_transaction_isolation")
    ]
    assert [sql.lstrip()[:6].upper() for sql in sqls] == ["SELECT", "UPDATE"]
    locked = "FOR UPDATE" in sqls[0].upper()
    assert locked == connection.features.has_select_for_update
    assert connection.get_autocommit()
    assert not connection.in_atomic_block
    seen: list[int] = []
    in_another_thread(lambda: seen.append(Product.objects.using(db).get(pk=product.pk).category_id))
    assert seen == [b.pk]  # committed


@pytest.mark.parametrize("change", ["name", "category"])
def test_a_failed_autocommit_save_leaves_the_row_unlocked_and_autocommit_on(db: str, change: str) -> None:
    a, b = Category.objects.using(db).create(name="a"), Category.objects.using(db).create(name="b")
    pk = Product.objects.using(db).create(name="p", category=a).pk
    product = Product.objects.using(db).get(pk=pk)
    tc = TagCache("default")
    assert _listing(tc, a, db) == ["p"]
    if change == "name":
        product.name = None  # type: ignore[assignment]  # NOT NULL: the UPDATE itself fails
    else:
        product.category_id = 2**31 - 1  # no such category: fails at the UPDATE or at the commit
    with pytest.raises(IntegrityError):
        product.save()
    connection = connections[db]
    assert connection.get_autocommit()
    assert not connection.in_atomic_block
    assert not connection.needs_rollback
    saved: list[str] = []

    def editor() -> None:
        _fail_instead_of_waiting(db)
        _move(pk, b, db)  # no lock of the failed save is left to wait for
        saved.append("saved")

    in_another_thread(editor)
    assert saved == ["saved"]
    assert _listing(tc, a, db) == []
    assert _listing(tc, b, db) == ["p"]
    # The connection of the failed save writes on in autocommit.
    again = Product.objects.using(db).get(pk=pk)
    again.name = "q"
    again.save()
    with transaction.atomic(using=db):
        assert Product.objects.using(db).get(pk=pk).name == "q"
