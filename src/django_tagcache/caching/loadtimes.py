"""When the rows a model instance is built from were read: the start of the query that returned them.

``post_init`` runs when an instance is built, after its ``SELECT`` has executed, and for a
server-side cursor (``iterator()`` on PostgreSQL) possibly long after it was declared. The
database took its snapshot when the query started, so that is the moment the instance's data
dates from. An execute wrapper on every connection records when each query of the current
thread (or task) starts, and when each server-side cursor still open was declared; an instance
counts as loaded at the earliest of those, or now (see docs/concepts.md, "Read fences").

Inside a transaction that reads from one snapshot (REPEATABLE READ or SERIALIZABLE, and every
SQLite transaction), the snapshot is taken by the transaction's first query, not by the query
that returns the row: there a query counts as starting when the transaction's first query did.
The connection keeps that moment from its transaction's first query until its commit or
rollback (:func:`snapshot_isolated` says which connections read from one snapshot; on PostgreSQL
without an ``isolation_level`` in ``OPTIONS`` the server is asked, once per connection).
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from ..core import protections

#: (a reference to a server-side cursor, when it was declared), for each one still open.
Cursors = tuple[tuple[Callable[[], Any], float], ...]
# (start of the latest query, the server-side cursors open) in this context.
_reads: ContextVar[tuple[float | None, Cursors]] = ContextVar("django_tagcache_reads", default=(None, ()))

#: Attribute of a Django connection: when the first query of its current transaction started.
FIRST = "_tagcache_transaction_started"
#: Attribute of a Django connection: whether its transactions read from one snapshot (unset: not known yet).
SNAPSHOTS = "_tagcache_snapshots"

# Isolation levels at which each statement reads a snapshot of its own.
_STATEMENT_LEVELS = frozenset({"READ_COMMITTED", "READ_UNCOMMITTED", "READ COMMITTED", "READ UNCOMMITTED"})


def snapshot_isolated(connection: Any) -> bool:
    """Whether a transaction on ``connection`` may read every row from its first query's snapshot.

    PostgreSQL and MySQL/MariaDB: when the isolation level in the connection's ``OPTIONS`` is
    above READ COMMITTED (Django's default on both is READ COMMITTED; on MySQL an empty one leaves
    the server's, REPEATABLE READ by default). SQLite: always (in WAL mode a read transaction sees
    the database as of its first read). Any other database: assumed so.
    """
    vendor = getattr(connection, "vendor", None)
    if vendor in ("postgresql", "mysql"):
        level = getattr(connection, "isolation_level", None)
        name = getattr(level, "name", level)  # psycopg's IsolationLevel, or MySQL's string
        return not (isinstance(name, str) and name.upper() in _STATEMENT_LEVELS)
    return True


def _session_default(connection: Any) -> bool | None:
    """PostgreSQL without ``isolation_level`` in ``OPTIONS``: whether the session's default level
    (from the server, the database, the role or the startup options) reads one snapshot.

    Asked once per connection, by the first query of its first transaction: a connection that
    never opens one pays nothing. ``None`` where ``OPTIONS`` decides (Django sets its level at BEGIN).
    """
    if connection.vendor != "postgresql" or "isolation_level" in connection.settings_dict.get("OPTIONS", {}):
        return None
    connection.__dict__[SNAPSHOTS] = False  # the question's own pass through this wrapper asks nothing
    with connection.cursor() as cursor:
        cursor.execute("SHOW default_transaction_isolation")
        row = cursor.fetchone()
    return not (row and str(row[0]).upper() in _STATEMENT_LEVELS)


def _snapshots(connection: Any, sql: Any) -> bool:
    held = connection.__dict__
    known = held.get(SNAPSHOTS)
    if known is None:
        known = _session_default(connection)
        known = held[SNAPSHOTS] = snapshot_isolated(connection) if known is None else known
    if not known and isinstance(sql, str) and "ISOLATION" in sql[:64].upper():
        # SET TRANSACTION / SESSION CHARACTERISTICS, BEGIN ISOLATION LEVEL ...: raised outside
        # OPTIONS. Counted as snapshot-isolated from now until the connection is replaced.
        known = held[SNAPSHOTS] = True
    return bool(known)


def _open(cursors: Cursors) -> Cursors:
    return tuple((ref, start) for ref, start in cursors if (c := ref()) is not None and not c.closed)


def record(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """An execute wrapper: note when this query starts, before the database sees it."""
    start = time.time()
    since = start
    connection = context.get("connection")
    if connection is not None:
        held = connection.__dict__
        if connection.in_atomic_block or not connection.autocommit:
            first = held.get(FIRST)
            if first is None:
                first = held[FIRST] = start
            if _snapshots(connection, sql) and protections.on("snapshot_floor"):
                since = first  # this query reads the snapshot the first one took
        elif FIRST in held:
            del held[FIRST]  # autocommit again: a transaction's end that no hook saw
    _latest, cursors = _reads.get()
    cursor = context.get("cursor")
    raw = getattr(cursor, "cursor", cursor)  # Django's CursorWrapper holds the driver's cursor
    if getattr(raw, "name", None):  # a server-side cursor: its rows are read later, from now
        try:
            ref: Callable[[], Any] = weakref.ref(raw)
        except TypeError:  # a driver cursor without weak references: held until it is closed
            ref = functools.partial(lambda held: held, raw)
        cursors = (*cursors, (ref, since))
    _reads.set((since, _open(cursors)))
    return execute(sql, params, many, context)


class _Ending:
    """A connection's ``_commit`` or ``_rollback``: the transaction ends, and its first query's
    start is forgotten. (Forgetting it late only dates later loads too early: refuses more.)"""

    __slots__ = ("connection", "method")

    def __init__(self, method: Callable[[], Any], connection: Any) -> None:
        self.method = method
        self.connection = connection

    def __call__(self) -> Any:
        try:
            return self.method()
        finally:
            self.connection.__dict__.pop(FIRST, None)


#: The package's execute wrappers (see :func:`place`): compared by identity, as another's
#: wrapper may be an object that cannot be hashed or compared.
_OURS: list[object] = []


def place(connection: Any, wrapper: Any) -> None:
    """Add one of the package's execute wrappers to ``connection``, before anyone else's.

    Django's ``execute_wrapper()`` block ends by removing the *last* wrapper of the list, whatever
    it is. Ours are added when a connection is created, which can happen inside such a block (a
    middleware logging a request's queries, around the first query of a new thread): at the end
    of the list, the block would remove ours, and leave its own in place for good. At the front,
    each block removes its own. Ours keep the order they were placed in. Idempotent.
    """
    if not any(wrapper is ours for ours in _OURS):
        _OURS.append(wrapper)
    wrappers = connection.execute_wrappers
    if any(wrapper is present for present in wrappers):
        return
    at = 0
    while at < len(wrappers) and any(wrappers[at] is ours for ours in _OURS):
        at += 1
    wrappers.insert(at, wrapper)


def install(connection: Any, **kwargs: Any) -> None:
    """Receiver of ``connection_created``: record the start of every query on ``connection``."""
    held = connection.__dict__
    held.pop(FIRST, None)  # a new database connection: no transaction open on it
    held.pop(SNAPSHOTS, None)
    place(connection, record)
    for name in ("_commit", "_rollback"):
        if not isinstance(held.get(name), _Ending):
            held[name] = _Ending(getattr(connection, name), connection)


def read_since() -> float:
    """The moment data an instance built now may date from: the earliest open read, or now."""
    now = time.time()
    latest, cursors = _reads.get()
    moments = [now] + ([latest] if latest is not None else []) + [start for _ref, start in _open(cursors)]
    return min(moments)
