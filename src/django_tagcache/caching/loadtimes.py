"""When the rows a model instance is built from were read: the start of the query that returned them.

``post_init`` runs when an instance is built, after its ``SELECT`` has executed, and for a
server-side cursor (``iterator()`` on PostgreSQL) possibly long after it was declared. The
database took its snapshot when the query started, so that is the moment the instance's data
dates from. An execute wrapper on every connection records when each query of the current
thread (or task) starts, and when each server-side cursor still open was declared; an instance
counts as loaded at the earliest of those, or now (see docs/concepts.md, "Read fences").
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

#: (a reference to a server-side cursor, when it was declared), for each one still open.
Cursors = tuple[tuple[Callable[[], Any], float], ...]
# (start of the latest query, the server-side cursors open) in this context.
_reads: ContextVar[tuple[float | None, Cursors]] = ContextVar("django_tagcache_reads", default=(None, ()))


def _open(cursors: Cursors) -> Cursors:
    return tuple((ref, start) for ref, start in cursors if (c := ref()) is not None and not c.closed)


def record(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """An execute wrapper: note when this query starts, before the database sees it."""
    start = time.time()
    _latest, cursors = _reads.get()
    cursor = context.get("cursor")
    raw = getattr(cursor, "cursor", cursor)  # Django's CursorWrapper holds the driver's cursor
    if getattr(raw, "name", None):  # a server-side cursor: its rows are read later, from now
        try:
            ref: Callable[[], Any] = weakref.ref(raw)
        except TypeError:  # a driver cursor without weak references: held until it is closed
            ref = functools.partial(lambda held: held, raw)
        cursors = (*cursors, (ref, start))
    _reads.set((start, _open(cursors)))
    return execute(sql, params, many, context)


def install(connection: Any, **kwargs: Any) -> None:
    """Receiver of ``connection_created``: record the start of every query on ``connection``."""
    if record not in connection.execute_wrappers:
        connection.execute_wrappers.append(record)


def read_since() -> float:
    """The moment data an instance built now may date from: the earliest open read, or now."""
    now = time.time()
    latest, cursors = _reads.get()
    moments = [now] + ([latest] if latest is not None else []) + [start for _ref, start in _open(cursors)]
    return min(moments)
