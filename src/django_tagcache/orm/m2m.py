"""Many-to-many relations: changes through the related managers, and rows written on the intermediate model.

A change invalidates, on both sides, each row's model tag, instance tag and declared tags
(``Meta.cache_tags``). Rendering a declared tag that needs more than the primary key reads the
related rows once per change (one query); the instance whose manager changed uses the values it
holds. Rows of a custom intermediate model (``through=``) created, saved or deleted directly send
no ``m2m_changed``: receivers on that model invalidate both rows it links, before and after.
Bulk writes to any intermediate table reach both sides' model tags through the SQL watcher.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import signals

from ..core import protections
from . import sqlwatch, storedrow, transaction
from .registry import registry, values_of

if TYPE_CHECKING:
    from django.db import models

PRE_CLEAR = "_tagcache_cleared"
SNAPSHOT = "_tagcache_links"
STORED = "_tagcache_stored_links"


_SIGNALS = {"post_init": signals.post_init, "pre_save": signals.pre_save, "post_save": signals.post_save}
_SIGNALS |= {"pre_delete": signals.pre_delete, "post_delete": signals.post_delete}


def connect(through: type[models.Model], *, disconnect: bool = False) -> None:
    """(Dis)connect the receivers of one intermediate model (idempotent: a dispatch_uid each)."""
    uid = f"django_tagcache.orm.m2m.{through._meta.label_lower}"
    receivers: dict[str, Any] = {"m2m_changed": _m2m_changed}
    if not through._meta.auto_created:  # Django writes auto-created ones only with bulk queries
        receivers |= {"post_init": _post_init, "pre_save": _pre_save, "post_save": _post_save}
        receivers |= {"pre_delete": _pre_delete, "post_delete": _post_delete}
    for name, receiver in receivers.items():
        signal = signals.m2m_changed if name == "m2m_changed" else _SIGNALS[name]
        if disconnect:
            signal.disconnect(sender=through, dispatch_uid=f"{uid}.{name}")
        else:
            signal.connect(receiver, sender=through, dispatch_uid=f"{uid}.{name}")


def related_tags(model: type[models.Model], pks: Iterable[Any], using: str) -> set[str]:
    """Every tag of the rows of ``model`` with these primary keys; at most one query."""
    pks = {pk for pk in pks if pk is not None}
    if not pks or not registry.is_registered(model):
        return set()
    names = registry.snapshot_names(model)
    if names == ("pk",):
        rows: Iterable[dict[str, Any]] = ({"pk": pk} for pk in pks)
    else:
        pk_name = model._meta.pk.attname
        wanted = [pk_name, *(name for name in names if name != "pk")]
        rows = list(model._base_manager.using(using).filter(pk__in=pks).values(*wanted))
        for row in rows:
            row["pk"] = row[pk_name]
        # A row deleted meanwhile still has its model and instance tags.
        missing = pks - {row["pk"] for row in rows}
        rows += [{"pk": pk} for pk in missing]
    tags: set[str] = set()
    for row in rows:
        tags |= registry.tags(model, row)
    return tags


def _m2m_changed(
    sender: type[models.Model],
    instance: models.Model,
    action: str,
    reverse: bool,
    model: type[models.Model],
    pk_set: set[Any] | None,
    using: str,
    **kwargs: Any,
) -> None:
    if action == "pre_clear":
        # Which rows lose the relation is known only before the clear: one query.
        instance.__dict__[PRE_CLEAR] = set(
            _related_manager(sender, instance, model).values_list("pk", flat=True)
        )
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    related = instance.__dict__.pop(PRE_CLEAR, set()) if action == "post_clear" else set(pk_set or ())
    side = type(instance)
    tags = registry.tags(side, values_of(instance, registry.snapshot_names(side)))
    # The instance may be out of date (another editor saved the row since it was loaded): the
    # entries to reach are those under the tags of the row as stored.
    tags |= related_tags(side, [instance.pk], using) | related_tags(model, related, using)
    transaction.add(tags, using)


def _related_manager(through: type[models.Model], instance: models.Model, model: type[models.Model]) -> Any:
    """The manager of ``instance`` for the m2m relation whose intermediate model is ``through``."""
    for field in type(instance)._meta.get_fields():
        if not field.many_to_many:
            continue
        if not field.auto_created and getattr(field.remote_field, "through", None) is through:
            return getattr(instance, field.name)  # the forward side: the ManyToManyField
        if field.auto_created and getattr(field, "through", None) is through:
            return getattr(instance, str(field.get_accessor_name()))  # type: ignore[union-attr]
    return model._base_manager.none()


def _links(through: type[models.Model]) -> list[Any]:
    """The foreign keys of an intermediate model that point to models with cache tags."""
    return [
        f
        for f in through._meta.concrete_fields
        if f.many_to_one and isinstance(f.related_model, type) and registry.is_registered(f.related_model)
    ]


def _linked_tags(instance: models.Model, values: dict[str, Any], using: str) -> set[str]:
    tags: set[str] = set()
    for field in _links(type(instance)):
        tags |= related_tags(field.related_model, [values.get(field.attname)], using)
    return tags


def _values(instance: models.Model) -> dict[str, Any]:
    return values_of(instance, [field.attname for field in _links(type(instance))])


def _post_init(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    instance.__dict__[SNAPSHOT] = _values(instance)


def _stored(instance: models.Model, using: str) -> dict[str, Any] | None:
    """The link values of the row as stored (the instance may be out of date): one query.

    Inside a transaction the row is locked where the database can; a save outside one reads
    it with its UPDATE instead (:func:`_stored_tags`).
    """
    if instance.pk is None or instance._state.adding or not protections.on("stored_row"):
        return None
    connection = connections[using]
    lock = connection.in_atomic_block and connection.features.has_select_for_update
    return _read(instance, using, lock=lock)


def _read(instance: models.Model, using: str, *, lock: bool) -> dict[str, Any] | None:
    names = ("pk", *(field.attname for field in _links(type(instance))))
    row = storedrow.read(type(instance), instance.pk, names, using, lock=lock)
    if row is not None:
        del row["pk"]  # compared with _values(), which has no primary key
    return row


def _stored_tags(instance: models.Model, using: str) -> set[str]:
    """The tags of the rows the stored row linked, where it linked others than the instance
    does: read locked right before the UPDATE of a save begun outside a transaction, in one
    transaction with it (sqlwatch)."""
    stored = _read(instance, using, lock=connections[using].features.has_select_for_update)
    if not stored or stored == _values(instance):
        return set()
    return _linked_tags(instance, stored, using)


def _pre_save(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    if instance._state.adding or connections[using].in_atomic_block or not protections.on("stored_row"):
        instance.__dict__[STORED] = _stored(instance, using)
        sqlwatch.saving(instance, sender, using)
    else:  # outside a transaction: the stored row is read with the UPDATE, in one with it
        sqlwatch.saving(instance, sender, using, before=_stored_tags)


def _post_save(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    before: dict[str, Any] = instance.__dict__.get(SNAPSHOT, {})
    stored: dict[str, Any] | None = instance.__dict__.pop(STORED, None)
    after = instance.__dict__[SNAPSHOT] = _values(instance)
    tags = _linked_tags(instance, after, using) | sqlwatch.saved(instance)
    for earlier in (before, stored):
        if earlier and earlier != after:  # the row was pointed at other rows: those lose the link
            tags |= _linked_tags(instance, earlier, using)
    transaction.add(tags, using)


def _pre_delete(
    sender: type[models.Model], instance: models.Model, using: str, origin: object = None, **kwargs: Any
) -> None:
    if origin is instance:  # the rows a cascade reaches were just read by Django's Collector
        instance.__dict__[STORED] = _stored(instance, using)


def _post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    tags = _linked_tags(instance, _values(instance), using)
    stored: dict[str, Any] | None = instance.__dict__.pop(STORED, None)
    if stored and stored != _values(instance):
        tags |= _linked_tags(instance, stored, using)
    transaction.add(tags, using)
