"""ORM events -> one de-duplicated invalidation per transaction, after it commits.

Outside a transaction, tags are invalidated at once. Inside one, they are collected per database
alias and sent in one call when the outermost block commits (``transaction.on_commit``); a
rollback sends nothing. A manual transaction (autocommit off) is sent after its commit too, see
:mod:`.manual`.

Savepoints: Django drops the on_commit callbacks registered inside a savepoint that rolls back.
So the tags are kept per savepoint level (a :class:`_Batch`), each write registers a callback of
its level (a :class:`_Hook`), and at commit the first hook to run sends the tags of every batch
still alive, in one call. Another app's hook that raises cannot drop them (see :class:`_Guard`).
The state is per thread, like Django's connections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from ..caching import namespaces
from ..conf import conf
from . import manual
from .flushing import flush
from .ownsaves import alone, merge_writers, record_writer

if TYPE_CHECKING:
    from .ownsaves import Saved

_local = threading.local()


class _Hook:
    """One on_commit callback per write, running its transaction's batches.

    A batch is registered again with every write, not once, because Django's
    ``captureOnCommitCallbacks(execute=True)`` runs only the callbacks registered inside its
    block: a test that wrote before the block must still see the block's writes invalidated.
    The first hook to run flushes every live batch; the others find their batch done.
    """

    __slots__ = ("__qualname__", "batch")

    def __init__(self, batch: _Batch) -> None:
        self.batch = batch
        # Django names a robust callback by its __qualname__ when logging an error it raised.
        self.__qualname__ = "django_tagcache.orm.transaction._Batch"

    def __call__(self) -> None:
        if not self.batch.done:
            self.batch.transaction.run(self)


def is_hook(callback: object) -> bool:
    """Whether a commit hook is one of this module's (and not yet run)."""
    return isinstance(callback, _Hook) and not callback.batch.done


def _batch_of(entry: Any) -> _Batch | None:
    """The batch of a run_on_commit entry (savepoint ids, callback, robust), if it is one of ours."""
    callback = entry[1]
    return callback.batch if isinstance(callback, _Hook) else None


class _Batch:
    """The tags of one savepoint level of one transaction."""

    __slots__ = ("done", "outbox", "saved", "tags", "transaction", "writers")

    def __init__(self, owner: _Transaction) -> None:
        self.transaction = owner
        # Per namespace the tags were produced in: each is invalidated in its own namespace.
        self.tags: dict[str | None, set[str]] = {}
        self.done = False
        self.outbox: dict[str | None, Any] | None = {} if conf.OUTBOX else None
        # Per namespace, the instances that saved themselves (ownsaves.py).
        self.saved: dict[str | None, list[Saved]] = {}
        # Tag -> its only writer in this batch, or MANY: who else wrote a saved instance's tags.
        self.writers: dict[str, object] = {}

    def add(self, tags: Iterable[str], saved: Saved | None = None, writer: Any = None) -> None:
        tags = tags if isinstance(tags, (set, frozenset)) else set(tags)
        namespace = namespaces.current()
        held = self.tags.get(namespace)
        if held is None:
            held = self.tags[namespace] = set()
        held.update(tags)
        if saved is not None:
            self.saved.setdefault(namespace, []).append(saved)
        record_writer(self.writers, tags, saved, writer)
        if self.outbox is not None:
            # Inside the transaction: the row commits, or rolls back, with the change itself.
            recorder = self.outbox.get(namespace)
            if recorder is None:
                recorder = self.outbox[namespace] = _recorder(self.transaction.using)
            recorder.record(held)


def _recorder(using: str) -> Any:
    # The outbox defines a model: import it once apps are ready, never with this module.
    from .outbox import Recorder

    return Recorder(using)


class _Transaction:
    """The batches of one transaction on one database alias.

    Each batch points to its transaction, so a commit hook that starts a new transaction (and so
    a new ``_Transaction``) cannot make an earlier one lose its batches.
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self.batches: dict[tuple[str, ...], _Batch] = {}
        self.callbacks: list[Any] | None = None  # Django's callback list when a batch was last added
        self.guarded = 0  # how many entries of ``callbacks`` were looked at by _guard_others()

    def run(self, hook: _Hook | None) -> None:
        """Flush every live batch: the first hook of the transaction to run does it for all, or a
        :class:`_Guard` (``hook`` None) whose hook raised before any of ours could run."""
        committed = time.monotonic()  # the commit hooks run right after the commit
        batches = [b for b in self.batches.values() if not b.done]
        remaining = self.callbacks
        if remaining is not None and not any(entry[1] is hook for entry in remaining):
            # ``remaining`` is the list Django is running (this hook was popped from it): the
            # batches with a hook still in it are exactly the live ones; any other was rolled back
            # with its savepoint. Otherwise a savepoint rollback replaced the list after the last
            # add, or a test's captureOnCommitCallbacks runs the hooks in place, and every known
            # batch is flushed: at worst a rolled-back savepoint's tags are invalidated.
            alive = {id(_batch_of(entry)) for entry in remaining}
            live = [b for b in batches if id(b) in alive or (hook is not None and b is hook.batch)]
            batches = live if live or hook is not None else batches
        if hook is not None and hook.batch not in batches:
            batches.append(hook.batch)
        tags: dict[str | None, set[str]] = {}
        rows: dict[str | None, list[int]] = {}
        saved: dict[str | None, list[Saved]] = {}
        writers: dict[str, object] = {}
        for batch in batches:
            merge_writers(writers, batch.writers)
            for namespace, held in batch.tags.items():
                tags.setdefault(namespace, set()).update(held)
            for namespace, instances in batch.saved.items():
                saved.setdefault(namespace, []).extend(instances)
            batch.done = True
            for namespace, recorder in (batch.outbox or {}).items():
                rows.setdefault(namespace, []).extend(recorder.ids)
        self.batches = {}
        self.callbacks = None
        # One invalidation for all the transaction's writes: an instance whose tags another write
        # of it touched (in any namespace) cannot tell that change from its own, so it stays undated.
        saved = {
            namespace: [s for s in instances if alone(s, writers)] for namespace, instances in saved.items()
        }
        for namespace in sorted(tags, key=lambda name: name or ""):
            with namespaces.in_namespace(namespace):
                flush(
                    tags[namespace], self.using, rows.get(namespace, ()), saved.get(namespace, ()), committed
                )


def _current(using: str, callbacks: list[Any]) -> _Transaction:
    """The transaction that a tag added now belongs to, given Django's current callback list."""
    states: dict[str, _Transaction] | None = getattr(_local, "states", None)
    if states is None:
        states = _local.states = {}
    state = states.get(using)
    if state is None:
        state = states[using] = _Transaction(using)
    if state.callbacks is not callbacks:
        # Django replaced its callback list since we last looked: the transaction committed or
        # rolled back, or a savepoint rolled back. Keep the batches still registered; if none is,
        # this is another transaction (maybe one started by a commit hook of the last one, whose
        # batches must stay with it). Entries are (savepoint ids, callback, robust) tuples.
        alive = {id(_batch_of(entry)) for entry in callbacks}
        kept = {sids: b for sids, b in state.batches.items() if id(b) in alive and not b.done}
        if kept or not state.batches:
            state.batches = kept
        else:
            state = states[using] = _Transaction(using)
        state.callbacks = callbacks
        state.guarded = 0
    return state


class _Guard:
    """Another app's commit hook that is not robust, wrapped so that its exception cannot cost an
    invalidation: Django runs no hook after one that raises, so if it raises, the transaction's
    batches are flushed before the exception goes on. It runs, and raises, exactly as before."""

    __slots__ = ("__qualname__", "func", "transaction")

    def __init__(self, func: Any, owner: _Transaction) -> None:
        self.func = func
        self.transaction = owner
        self.__qualname__ = getattr(func, "__qualname__", type(func).__qualname__)

    def __call__(self) -> None:
        try:
            self.func()
        except BaseException:
            self.transaction.run(None)
            raise


def _guard_others(state: _Transaction, callbacks: list[Any]) -> None:
    """Guard every hook registered before the hook just added, that no earlier add looked at.

    Hooks registered after the transaction's last add run after its hooks, so need no guard.
    """
    for i in range(state.guarded, len(callbacks) - 1):
        sids, func, robust = callbacks[i]
        if not robust and not isinstance(func, (_Hook, _Guard)):
            callbacks[i] = (sids, _Guard(func, state), robust)  # same place, same savepoints
    state.guarded = len(callbacks)


def add(tags: Iterable[str], using: str, saved: Saved | None = None, writer: Any = None) -> None:
    """Invalidate ``tags`` after the current transaction on ``using`` commits, or now outside one.

    ``saved`` is an instance that saved itself, to be dated by the invalidation (ownsaves.py);
    ``writer`` the weak reference to an instance whose save wrote ``tags`` (its own statements).
    """
    connection = connections[using]
    atomic = connection.in_atomic_block
    if not atomic and connection.get_autocommit():
        flush(set(tags), using, (), () if saved is None else (saved,))
        return
    state = _current(using, connection.run_on_commit)
    sids = tuple(connection.savepoint_ids)
    batch = state.batches.get(sids)
    if batch is None:
        batch = state.batches[sids] = _Batch(state)
    hook = _Hook(batch)  # one per write: see _Hook
    if atomic:
        transaction.on_commit(hook, using=using, robust=True)
    else:
        # Autocommit is off outside atomic(): on_commit() refuses to register hooks there, since
        # Django runs them only if autocommit comes back on; manual.check() makes sure they run.
        connection.run_on_commit.append((set(connection.savepoint_ids), hook, True))  # type: ignore[arg-type]  # stubs: pre-4.2 pairs
    _guard_others(state, connection.run_on_commit)
    if not atomic or not connection.commit_on_exit:
        manual.wait_for_commit(using, is_hook)
    batch.add(tags, saved, writer)
