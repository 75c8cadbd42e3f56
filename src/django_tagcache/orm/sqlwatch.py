"""Bulk writes the ORM sends no signal for: ``QuerySet.update()``, ``bulk_create()``, ``bulk_update()``.

A database execute wrapper (Django's instrumentation hook, installed on each connection as it is
created) looks at every statement's first words (see :mod:`.dml`). An INSERT, UPDATE or DELETE
(in any form Django's backends generate) on the table of a model with cache tags invalidates
that model's tag (and its registered multi-table children's) through the transaction batch; one
on the intermediate table of a many-to-many relation of such a model invalidates the model tags
of the registered side(s). A SELECT costs one string check.

While ``save()`` runs, its own statements are held back and handed to ``post_save``, so that an
autocommit save costs one Redis round trip, not two (a multi-table child too, whose parents
Django saves in a block of their own). A save whose statement raises is forgotten
at once (and so is one that raised elsewhere, at the next save of the same instance or the next
request), so that later writes are never held back by it.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import Model

from ..caching import loadtimes
from . import manual, storedrow, transaction
from .dml import written_tables
from .flushing import flush
from .registry import registry, throughs

if TYPE_CHECKING:
    from django.db import models

_local = threading.local()
_NONE: set[str] = set()  # a default never mutated


@dataclass
class _Saving:
    instance_id: int
    tables: frozenset[str]
    using: str
    # The save began outside any transaction: its statements are held back even inside the
    # atomic(savepoint=False) block Django opens to save a multi-table child with its parents,
    # so that the block's commit does not cost a round trip of its own before post_save's.
    outer: bool
    # The frame of Django's Model.save_base() running this save: while it is on the call stack
    # the save is in progress; once it is not, post_save was never reached (see _live).
    frame: FrameType | None
    # The tags the save's post_save receiver will invalidate, as far as they are known before the
    # write: invalidated even if that receiver never runs (another app's receiver raised first).
    fallback: set[str]
    # The saved instance, as the writer of its own statements in a transaction's batch.
    ref: Any = None
    # Reads the tags of the row the save overwrites, run with its first own write (see
    # _first_write): set by a save that began outside a transaction, cleared once run.
    before: Callable[[Any, str], set[str]] | None = None
    held: set[str] = field(default_factory=set)
    wrote: bool = False

    def holds(self, table: str, alias: str) -> bool:
        """Whether a statement writing ``table`` on ``alias`` now is this save's own, to hold back."""
        return self.outer and table in self.tables and self.using == alias


def _stack() -> list[_Saving]:
    stack: list[_Saving] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _tables(model: type[models.Model]) -> frozenset[str]:
    concrete = model._meta.concrete_model or model
    return frozenset(m._meta.db_table for m in (concrete, *concrete._meta.get_parent_list()))


def saving(
    instance: models.Model,
    model: type[models.Model],
    using: str,
    fallback: set[str] = _NONE,
    before: Callable[[Any, str], set[str]] | None = None,
) -> None:
    """A save of ``instance`` starts: hold back the tags of its own statements.

    ``fallback``: the tags to invalidate if the save writes but its post_save never reaches
    :func:`saved`: inside a transaction they join its batch with the save's first statement;
    outside one, they are flushed when the save is forgotten (:func:`reset`, or the next save of
    the same instance).

    ``before(instance, using)``: for a save that begins outside any transaction, reads the tags
    of the row it overwrites; it runs right before the save's first own statement, in one
    transaction with it (see :func:`_first_write`), and its tags join those the save invalidates.
    """
    stack = _stack()
    # An instance's save never runs inside its own: an entry of it is left by a save that raised.
    for entry in [entry for entry in stack if entry.instance_id == id(instance)]:
        _forget(entry)
    outer = not connections[using].in_atomic_block
    entry = _Saving(
        id(instance), _tables(model), using, outer, _save_frame(), fallback, weakref.ref(instance)
    )
    if outer:
        entry.before = before
    stack.append(entry)


def _save_frame() -> FrameType | None:
    """The frame of the Model.save_base() call that sent the pre_save signal being handled."""
    frame: FrameType | None = sys._getframe(2)
    code = Model.save_base.__code__
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    return frame


def _own_statement(entry: _Saving) -> bool:
    """Whether the statement running now is one of the save's own: Django's ``_save_table()`` of
    that save runs it (not a receiver of pre_save or post_save, say, writing the same table)."""
    if entry.frame is None:
        return False
    code = Model._save_table.__code__  # type: ignore[attr-defined]  # private, not in the stubs
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame is not entry.frame:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def _live(entry: _Saving) -> bool:
    """Whether the save of ``entry`` is still running: its save_base() frame is on the stack."""
    if entry.frame is None:
        return True  # not saved through save_base(): rely on post_save and reset()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame is entry.frame:
            return True
        frame = frame.f_back
    return False


def _top(stack: list[_Saving]) -> _Saving | None:
    """The innermost save still running; saves found over are forgotten on the way."""
    while stack:
        if _live(stack[-1]):
            return stack[-1]
        _forget(stack[-1])
    return None


def _drop(entry: _Saving) -> None:
    """Forget a save whose statement raised, invalidating what it held."""
    _stack().remove(entry)
    if entry.held:
        flush(entry.held, entry.using)


def _forget(entry: _Saving) -> None:
    """Forget a save that left post_save unreached, invalidating what it held and, if it wrote,
    the tags its post_save would have invalidated."""
    _stack().remove(entry)
    tags = entry.held | entry.fallback if entry.wrote else entry.held
    if tags:
        flush(tags, entry.using)


def saved(instance: models.Model) -> set[str]:
    """The save of ``instance`` ended: the tags its statements were holding back."""
    stack = _stack()
    for position in range(len(stack) - 1, -1, -1):
        if stack[position].instance_id == id(instance):
            return stack.pop(position).held
    return set()


def reset(**kwargs: Any) -> None:
    """Forget saves that never finished (an exception between pre_ and post_save), flushing what they held.

    Connected to ``request_started`` and ``request_finished``: such a save raised into the request.
    """
    for entry in list(_stack()):
        _forget(entry)


def table_tags() -> dict[str, frozenset[str]]:
    """Table name -> model tags to invalidate when a statement writes to it."""
    tags: dict[str, set[str]] = {}
    for config in registry.configs():
        labels = {config.label, *(child.label for child in registry.descendants(config.model))}
        tags.setdefault(config.model._meta.db_table, set()).update(labels)
        # A write to an intermediate table changes the relation: both sides' model tags.
        for through in throughs(config.model):
            tags.setdefault(through._meta.db_table, set()).update(labels)
    return {table: frozenset(labels) for table, labels in tags.items()}


def watch(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """The execute wrapper: run the statement, then queue the tags of the table it wrote to."""
    if manual.any_waiting():  # a manual transaction may have committed since the last statement
        manual.check(context["connection"])
    if sql[:1] in ("S", "s"):  # SELECT / SAVEPOINT: the common case, decided without a regex
        return execute(sql, params, many, context)
    tables = written_tables(sql)
    known = registry_tables()
    labels = frozenset().union(*(known.get(table, ()) for table in tables))
    if not labels:
        return execute(sql, params, many, context)
    table = tables[0]
    stack = _stack()
    connection = context["connection"]
    top = _top(stack) if stack else None
    saving = top if top is not None and top.holds(table, connection.alias) else None
    if saving is not None and saving.before is not None and _own_statement(saving):
        read, saving.before = saving.before, None
        if sql[:1] not in ("I", "i"):  # an INSERT overwrites no row (one that exists makes it fail)
            return _first_write(saving, read, labels, execute, sql, params, many, context)
    try:
        result = execute(sql, params, many, context)
    except Exception:
        if saving is not None:
            _drop(saving)  # the save raises: it will never reach post_save to collect the entry
        raise
    if saving is not None:
        saving.held |= labels
        saving.wrote = True
        return result
    writer = None
    if top is not None and table in top.tables and top.using == connection.alias:
        if top.fallback:
            labels = labels | top.fallback  # a save in a transaction: its tags go with the batch now
            top.fallback = _NONE
        if _own_statement(top):
            writer = top.ref  # its own row's write: not another change of the row (ownsaves.alone)
    transaction.add(labels, connection.alias, writer=writer)
    return result


def _first_write(
    entry: _Saving,
    read: Callable[[Any, str], set[str]],
    labels: frozenset[str],
    execute: Callable[..., Any],
    sql: str,
    params: Any,
    many: bool,
    context: dict[str, Any],
) -> Any:
    """Run the first own statement of a save begun outside a transaction, after reading the row
    it overwrites, both in one transaction: no other save can commit between the read and the
    write, so the tags the row leaves are those of the row the database really overwrites.

    Outside a transaction, the read and the UPDATE are two transactions of their own, and a save
    committed between them would be missed. Inside the block Django opens to save a multi-table
    child with its parents, the read joins that block and its lock lasts until it commits.
    """
    instance = entry.ref()
    try:
        with storedrow.exclusively(context["connection"]):
            tags = read(instance, entry.using) if instance is not None else _NONE
            result = execute(sql, params, many, context)
    except Exception:
        _drop(entry)  # the save raises: nothing was written, nothing read counts
        raise
    entry.held |= labels | tags
    entry.fallback = entry.fallback | tags
    entry.wrote = True
    return result


_tables_cache: dict[str, frozenset[str]] | None = None


def registry_tables() -> dict[str, frozenset[str]]:
    global _tables_cache
    if _tables_cache is None:
        _tables_cache = table_tags()
    return _tables_cache


def forget_tables() -> None:
    """Rebuild the table map on next use (after a model is registered)."""
    global _tables_cache
    _tables_cache = None


def install(connection: Any, **kwargs: Any) -> None:
    """Add the wrapper to a database connection (a ``connection_created`` receiver); idempotent."""
    loadtimes.place(connection, watch)
