"""Read the tag values of a row as stored: one SELECT by primary key, compiled once per model.

A save reads the row it overwrites (see ``handlers._stored_row``). Building that query through
the ORM costs some 15 times more than running it, on every save; so the SQL and the value
converters are compiled once per model, alias, field list and lock mode, on each thread's
connection, and each save only executes the statement.

:func:`exclusively` makes the read and the save's write one transaction when the save runs
outside one (sqlwatch runs them so).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction

# (model, alias, names, lock, connection id) -> (sql, compiler, converters). Per process; bounded.
_compiled: dict[tuple[Any, ...], tuple[str, Any, Any]] = {}


def _compile(model: Any, using: str, names: tuple[str, ...], lock: bool, pk: Any) -> tuple[str, Any, Any]:
    wanted = [name if name != "pk" else model._meta.pk.attname for name in names]
    rows = model._base_manager.using(using).filter(pk=pk)
    if lock:
        rows = rows.select_for_update()
    compiler = rows.values_list(*wanted).query.get_compiler(using)
    sql, _params = compiler.as_sql()
    return sql, compiler, compiler.get_converters([column[0] for column in compiler.select])


def read(model: Any, pk: Any, names: tuple[str, ...], using: str, *, lock: bool) -> dict[str, Any] | None:
    """Values of ``names`` (``pk`` among them) of the stored row ``pk``, or None if there is none.

    ``lock`` reads it with ``SELECT ... FOR UPDATE``.
    """
    connection = connections[using]
    key = (model, using, names, lock, id(connection))
    compiled = _compiled.get(key)
    if compiled is None:
        if len(_compiled) > 1000:
            _compiled.clear()
        compiled = _compiled[key] = _compile(model, using, names, lock, pk)
    sql, compiler, converters = compiled
    param = model._meta.pk.get_db_prep_value(pk, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [param])
        row = cursor.fetchone()
    if row is None:
        return None
    if converters:
        row = next(iter(compiler.apply_converters([row], converters)))
    values = dict(zip(names, row, strict=True))
    values["pk"] = pk
    return values


@contextmanager
def exclusively(connection: Any) -> Iterator[None]:
    """One transaction around a read of a row and its write, so that no other writer of the row
    commits between the two (the read locks the row where the database has SELECT ... FOR UPDATE).

    In an atomic block, or a transaction of the caller's own (autocommit off), the read and the
    write are in it already. SQLite takes its write lock at the start (``BEGIN IMMEDIATE``): a
    transaction that read first and wrote second could only fail ("database is locked") where
    another writer got in between, and could make that writer fail too, while a writer waiting
    for the lock waits its turn. Django starts its own transactions on SQLite with a plain
    ``BEGIN`` (unless the database's ``transaction_mode`` option says otherwise), so this one is
    started on the driver's connection, which Django leaves in autocommit outside its
    transactions; with autocommit off, Python's sqlite3 would open one only before the write.
    """
    if connection.in_atomic_block:
        yield
        return
    sqlite = connection.vendor == "sqlite"
    if not connection.get_autocommit():
        if sqlite and not connection.connection.in_transaction:
            with connection.wrap_database_errors:
                connection.connection.execute("BEGIN IMMEDIATE")  # the caller commits it
        yield
    elif sqlite:
        raw = connection.connection
        with connection.wrap_database_errors:
            raw.execute("BEGIN IMMEDIATE")
        try:
            yield
            with connection.wrap_database_errors:
                raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:  # a COMMIT refused (a deferred foreign key) leaves it open
                raw.execute("ROLLBACK")
            raise
    else:
        with transaction.atomic(using=connection.alias):
            yield
