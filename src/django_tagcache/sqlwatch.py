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

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import connections

from . import manual, transaction
from .dml import written_tables
from .flushing import flush
from .registry import registry

if TYPE_CHECKING:
    from django.db import models

_local = threading.local()


@dataclass
class _Saving:
    instance_id: int
    tables: frozenset[str]
    using: str
    # The save began outside any transaction: its statements are held back even inside the
    # atomic(savepoint=False) block Django opens to save a multi-table child with its parents,
    # so that the block's commit does not cost a round trip of its own before post_save's.
    outer: bool
    held: set[str] = field(default_factory=set)

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


def saving(instance: models.Model, model: type[models.Model], using: str) -> None:
    """A save of ``instance`` starts: hold back the tags of its own statements."""
    stack = _stack()
    # An instance's save never runs inside its own: an entry of it is left by a save that raised.
    for entry in [entry for entry in stack if entry.instance_id == id(instance)]:
        _drop(entry)
    outer = not connections[using].in_atomic_block
    stack.append(_Saving(id(instance), _tables(model), using, outer))


def _drop(entry: _Saving) -> None:
    """Forget a save that will never reach post_save, invalidating what it held."""
    _stack().remove(entry)
    if entry.held:
        flush(entry.held, entry.using)


def saved(instance: models.Model) -> set[str]:
    """The save of ``instance`` ended: the tags its statements were holding back."""
    stack = _stack()
    for position in range(len(stack) - 1, -1, -1):
        if stack[position].instance_id == id(instance):
            return stack.pop(position).held
    return set()


def reset(**kwargs: Any) -> None:
    """Forget saves that never finished (an exception between pre_ and post_save), flushing what they held.

    Connected to ``request_started``: such a save raised into the previous request.
    """
    stack = _stack()
    entries = list(stack)
    stack.clear()
    for entry in entries:
        flush(entry.held, entry.using)


def table_tags() -> dict[str, frozenset[str]]:
    """Table name -> model tags to invalidate when a statement writes to it."""
    from .m2m import throughs

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
    saving = stack[-1] if stack and stack[-1].holds(table, connection.alias) else None
    try:
        result = execute(sql, params, many, context)
    except Exception:
        if saving is not None:
            _drop(saving)  # the save raises: it will never reach post_save to collect the entry
        raise
    if saving is not None:
        saving.held |= labels
    else:
        transaction.add(labels, connection.alias)
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
    if watch not in connection.execute_wrappers:
        connection.execute_wrappers.append(watch)
