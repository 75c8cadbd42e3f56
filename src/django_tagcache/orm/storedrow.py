"""Read the tag values of a row as stored: one SELECT by primary key, compiled once per model.

A save reads the row it overwrites (see ``handlers._stored_row``). Building that query through
the ORM costs some 15 times more than running it, on every save; so the SQL and the value
converters are compiled once per model, alias, field list and lock mode, on each thread's
connection, and each save only executes the statement.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

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
