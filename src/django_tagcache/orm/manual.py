"""Manual transactions: autocommit off outside ``atomic()`` (``set_autocommit(False)``), or
``DATABASES[...]["AUTOCOMMIT"] = False``.

Their writes must be invalidated after their commit, like any other. Django runs a transaction's
commit hooks when autocommit is turned back on after a commit, and drops them on a rollback; the
batches of a manual transaction are registered as such hooks (see :mod:`.transaction`). With
``AUTOCOMMIT: False`` autocommit is never turned back on, so while hooks wait, the next statement
on the connection (and the end of each request) first asks the database driver whether the
transaction is still open. Once it is not, and no rollback dropped the hooks, the transaction
committed and they run then. The driver answers for SQLite, psycopg and PyMySQL; with another
driver the hooks wait for ``set_autocommit(True)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections

_local = threading.local()


IsHook = Callable[[object], bool]


def _waiting() -> dict[str, IsHook]:
    """The aliases whose manual transaction has hooks waiting, each with how to tell them apart."""
    waiting: dict[str, IsHook] | None = getattr(_local, "waiting", None)
    if waiting is None:
        waiting = _local.waiting = {}
    return waiting


def wait_for_commit(using: str, is_hook: IsHook) -> None:
    """Hooks of a manual transaction wait on ``using``: look for its commit from now on.

    ``is_hook(callback)`` tells those hooks among the connection's commit callbacks (the batches
    of :mod:`.transaction`, which hands it in: this module does not import that one).
    """
    _waiting()[using] = is_hook


def any_waiting() -> bool:
    return bool(getattr(_local, "waiting", None))


def check(connection: Any) -> None:
    """Run the waiting hooks of ``connection`` if its manual transaction has committed."""
    waiting = _waiting()
    is_hook = waiting.get(connection.alias)
    if is_hook is None or connection.in_atomic_block:
        return
    hooks = [entry for entry in connection.run_on_commit if is_hook(entry[1])]
    if not hooks:  # they ran (set_autocommit(True)), or a rollback dropped them
        del waiting[connection.alias]
        return
    if _in_transaction(connection) is not False:
        return
    del waiting[connection.alias]
    hooks[0][1]()  # the first hook flushes every live batch of the transaction
    # Django clears the list only when autocommit comes back on: drop ours, so that a connection
    # that never turns it on does not collect one entry per write.
    connection.run_on_commit[:] = [entry for entry in connection.run_on_commit if entry not in hooks]


def check_all(**kwargs: Any) -> None:
    """At the end of a request: run what committed manual transactions left waiting."""
    if any_waiting():
        for alias in list(_waiting()):
            check(connections[alias])


def _in_transaction(connection: Any) -> bool | None:
    """Whether the driver's connection has a transaction open; None when the driver does not say."""
    raw = connection.connection
    if raw is None:
        return None
    status = getattr(getattr(raw, "info", None), "transaction_status", None)
    if status is not None:  # psycopg: 0 is IDLE
        return int(status) != 0
    in_transaction = getattr(raw, "in_transaction", None)
    if isinstance(in_transaction, bool):  # sqlite3
        return in_transaction
    server_status = getattr(raw, "server_status", None)
    if isinstance(server_status, int):  # PyMySQL: the server's SERVER_STATUS_IN_TRANS flag
        return bool(server_status & 1)
    return None
