"""Load times in transactions that read from one snapshot (REPEATABLE READ, SERIALIZABLE, SQLite).

There every row the transaction reads is as of its first query: a load time is floored by that
query's start, and forgotten at commit or rollback. Under READ COMMITTED each query reads a
snapshot of its own and keeps its own start. On SQLite (an in-memory database the tests share,
so no second connection can commit) an invalidation stands for the editor's commit; on
PostgreSQL (DATABASE_URL) the editor commits for real from another thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection, transaction

from django_tagcache import invalidate_tags
from django_tagcache.caching.loadtimes import snapshot_isolated
from django_tagcache.core import metrics, protections
from tests.dbthreads import in_another_thread
from tests.test_freshness import card, edit
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["default", "locmem"])
def alias(request: pytest.FixtureRequest, settings: Any) -> str:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": request.param}
    return str(request.param)


def _isolation(level: str | None) -> Iterator[None]:
    if connection.vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import IsolationLevel

        options = connection.settings_dict.setdefault("OPTIONS", {})
        before = options.get("isolation_level")
        if level is None:
            options.pop("isolation_level", None)
        else:
            options["isolation_level"] = IsolationLevel[level]
        connection.close()  # the next query connects with the level
        try:
            yield
        finally:
            if before is None:
                options.pop("isolation_level", None)
            else:
                options["isolation_level"] = before
            connection.close()
    elif connection.vendor == "sqlite":
        yield  # every SQLite transaction reads one snapshot
    else:
        pytest.skip("SQLite or PostgreSQL")


@pytest.fixture
def snapshot_isolation() -> Iterator[None]:
    yield from _isolation("REPEATABLE_READ")


def _editor_commits(pk: int) -> None:
    if connection.vendor == "sqlite":
        invalidate_tags(f"shop.product:{pk}")  # the rows cannot change under the open transaction
    else:
        in_another_thread(lambda: edit(pk, name="new"))


def _load_after_an_edit(pk: int) -> tuple[Product, int]:
    """In a transaction: a first query, an editor's commit, then the row's load and a card of it."""
    with transaction.atomic():
        assert Category.objects.count() == 1  # the transaction's snapshot is taken here
        _editor_commits(pk)
        loaded = Product.objects.get(pk=pk)
        stores = metrics.snapshot()["stores"]
        assert card(loaded) == "old"
        return loaded, int(metrics.snapshot()["stores"] - stores)


@pytest.mark.usefixtures("snapshot_isolation")
def test_a_row_loaded_late_in_a_snapshot_transaction_dates_from_its_first_query(alias: str) -> None:
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    _loaded, stored = _load_after_an_edit(pk)
    assert stored == 0
    if connection.vendor != "sqlite":
        assert card(Product.objects.get(pk=pk)) == "new"


@pytest.mark.usefixtures("snapshot_isolation")
def test_without_the_floor_the_snapshot_row_is_stored(alias: str) -> None:
    """The floor is needed: switched off, the old row is cached after the edit's invalidation."""
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    with protections.switched_off("snapshot_floor"):
        _loaded, stored = _load_after_an_edit(pk)
    assert stored == 1
    if connection.vendor != "sqlite":
        assert card(Product.objects.get(pk=pk)) == "old"  # stale: the row holds "new"


@pytest.mark.usefixtures("snapshot_isolation")
def test_the_floor_is_forgotten_when_the_transaction_ends(alias: str) -> None:
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    for end in ("commit", "rollback"):
        with transaction.atomic():
            assert Category.objects.count() == 1
            transaction.set_rollback(end == "rollback")
        invalidate_tags(f"shop.product:{pk}")
        with transaction.atomic():  # a new transaction, a new snapshot: loaded after the invalidation
            assert Category.objects.count() == 1
            loaded = Product.objects.get(pk=pk)
            stores = metrics.snapshot()["stores"]
            card(loaded)
            assert metrics.snapshot()["stores"] == stores + 1, end
        invalidate_tags(f"shop.product:{pk}")  # and the next round misses again


def test_under_read_committed_a_row_keeps_its_own_query_start(alias: str) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (READ COMMITTED)")
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    for _ in _isolation(None):
        with transaction.atomic():
            assert Category.objects.count() == 1
            in_another_thread(lambda: edit(pk, name="new"))
            loaded = Product.objects.get(pk=pk)  # its own snapshot: the new row
            stores = metrics.snapshot()["stores"]
            assert card(loaded) == "new"
            assert metrics.snapshot()["stores"] == stores + 1  # stored: no needless refusal


@pytest.mark.parametrize(
    ("vendor", "level", "snapshots"),
    [
        ("sqlite", None, True),
        ("mysql", "read committed", False),
        ("mysql", "repeatable read", True),
        ("mysql", "serializable", True),
        ("mysql", None, True),  # the server's own level: REPEATABLE READ unless configured
        ("postgresql", SimpleNamespace(name="READ_COMMITTED"), False),
        ("postgresql", SimpleNamespace(name="REPEATABLE_READ"), True),
        ("postgresql", SimpleNamespace(name="SERIALIZABLE"), True),
        ("oracle", None, True),  # not known: assumed
    ],
)
def test_which_connections_read_one_snapshot_per_transaction(
    vendor: str, level: Any, snapshots: bool
) -> None:
    assert snapshot_isolated(SimpleNamespace(vendor=vendor, isolation_level=level)) is snapshots


@pytest.fixture
def server_snapshot_isolation() -> Iterator[None]:
    """REPEATABLE READ as the session's default, from the connection's startup options: Django's
    ``isolation_level`` is left unset (the shared server, database and role are not altered)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (startup options)")
    options = connection.settings_dict.setdefault("OPTIONS", {})
    before = dict(options)
    options.pop("isolation_level", None)
    options["options"] = "-c default_transaction_isolation=repeatable\\ read"
    connection.close()  # the next query connects with the options
    try:
        yield
    finally:
        options.clear()
        options.update(before)
        connection.close()


@pytest.mark.usefixtures("server_snapshot_isolation")
def test_a_snapshot_level_from_the_startup_options_is_seen(alias: str) -> None:
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    with connection.cursor() as cursor:
        cursor.execute("SHOW default_transaction_isolation")
        assert cursor.fetchone()[0] == "repeatable read"
    _loaded, stored = _load_after_an_edit(pk)
    assert stored == 0
    assert card(Product.objects.get(pk=pk)) == "new"


def _shows() -> int:
    return sum("default_transaction_isolation" in query["sql"] for query in connection.queries)


@pytest.mark.parametrize("startup", ["OPTIONS", "startup options"])
def test_the_session_level_is_asked_once_per_connection_by_its_first_transaction(
    startup: str, request: pytest.FixtureRequest
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    if startup == "startup options":
        request.getfixturevalue("server_snapshot_isolation")
    else:
        request.getfixturevalue("snapshot_isolation")  # OPTIONS decides: nothing to ask
    connection.close()
    connection.force_debug_cursor = True
    try:
        assert Category.objects.count() == 0  # autocommit: no transaction, nothing asked
        assert _shows() == 0
        for _ in range(3):
            with transaction.atomic():
                assert Category.objects.count() == 0
        asked = 1 if startup == "startup options" else 0
        assert _shows() == asked  # the first transaction asks; the next ones ask nothing
        connection.close()
        with transaction.atomic():
            assert Category.objects.count() == 0
        assert _shows() == 2 * asked  # a new connection asks again
    finally:
        connection.force_debug_cursor = False


def test_a_session_level_set_by_the_application_is_seen() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    pk = Product.objects.create(name="old", category=Category.objects.create(name="a")).pk
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    try:
        _loaded, stored = _load_after_an_edit(pk)
        assert stored == 0
    finally:
        connection.close()  # the session's level goes with its connection
