"""Audit records that outlive a rollback of the transaction they were written in.

A purge happens in Redis at once, and Redis does not roll back. Its record is written in the
caller's transaction, so that a transaction that commits holds it beside the caller's own
writes (and a test running inside Django's ``TestCase`` sees it at once), and it is remembered
on the connection until that transaction ends: a commit forgets it; a rollback of the
transaction, or of a savepoint the record was written under, writes it again right after, on
the same connection, outside what was undone. A transaction the test framework opened
(``TestCase``) is not the application's: its final rollback writes nothing again.

The connection's ``commit``, ``rollback`` and ``savepoint_rollback`` are wrapped, on that
connection object only and the first time it holds a record, to hear of those ends: Django
sends no signal for a rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Attribute of a Django connection: the records written in its current transaction.
PENDING = "_tagcache_audit_pending"


@dataclass(frozen=True)
class Pending:
    """A record written (or due) in a transaction: how to write it again, under which savepoints."""

    write: Callable[[], object]
    savepoints: frozenset[str]
    under_test: bool  # the outermost block is a TestCase's


def in_transaction(connection: Any) -> bool:
    """Whether a write on ``connection`` now would be undone by a rollback to come."""
    return bool(connection.in_atomic_block or not connection.get_autocommit())


def remember(connection: Any, write: Callable[[], object]) -> None:
    """Keep ``write`` until the current transaction of ``connection`` ends (see the module)."""
    _install(connection)
    blocks = connection.atomic_blocks
    under_test = bool(blocks) and bool(getattr(blocks[0], "_from_testcase", False))
    entry = Pending(write, frozenset(connection.savepoint_ids), under_test)
    connection.__dict__.setdefault(PENDING, []).append(entry)


def _committed(connection: Any) -> None:
    connection.__dict__[PENDING] = []


def _rolled_back(connection: Any) -> None:
    undone: list[Pending] = connection.__dict__.get(PENDING, [])
    connection.__dict__[PENDING] = []
    again = [entry for entry in undone if not entry.under_test]
    for entry in again:
        entry.write()
    if again and not connection.get_autocommit():
        # Django is ending an atomic block (or the caller manages the transaction): the records
        # were written in a transaction of their own, which commits here, before autocommit is back.
        connection.commit()


def _savepoint_rolled_back(connection: Any, sid: str) -> None:
    pending: list[Pending] = connection.__dict__.get(PENDING, [])
    undone = [entry for entry in pending if sid in entry.savepoints]
    connection.__dict__[PENDING] = [entry for entry in pending if sid not in entry.savepoints]
    for entry in undone:
        entry.write()  # in the enclosing transaction, where it is remembered again


class _Then:
    """A connection's method, followed (once it returned) by what its end means for the records."""

    __slots__ = ("connection", "method", "then")

    def __init__(self, method: Callable[..., Any], connection: Any, then: Callable[..., None]) -> None:
        self.method = method
        self.connection = connection
        self.then = then

    def __call__(self, *args: Any) -> Any:
        result = self.method(*args)
        if self.connection.__dict__.get(PENDING):
            self.then(self.connection, *args)
        return result


def _install(connection: Any) -> None:
    held = connection.__dict__
    for name, then in (
        ("commit", _committed),
        ("rollback", _rolled_back),
        ("savepoint_rollback", _savepoint_rolled_back),
    ):
        if not isinstance(held.get(name), _Then):
            held[name] = _Then(getattr(connection, name), connection, then)
