"""Signal receivers: model writes -> tags of the rows before and after -> transaction batch.

Receivers are connected per model (``sender=``), only for models with cache tags, so a write to
any other model costs nothing. The values a row's tags depend on are snapshotted when an
instance is initialised (from the database, or by the caller), so a save knows the row's tags
before the change without a query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.models import signals

from ..caching import fences
from ..core import protections
from . import m2m, ownsaves, sqlwatch, storedrow, transaction
from .registry import registry, throughs, values_of

if TYPE_CHECKING:
    from django.db import models

SNAPSHOT = "_tagcache_snapshot"
BEFORE = "_tagcache_before"
STORED = "_tagcache_stored"


def connect(model: type[models.Model]) -> None:
    """Connect the receivers for ``model`` (idempotent: each has a dispatch_uid per model)."""
    uid = f"django_tagcache.{model._meta.label_lower}"
    signals.post_init.connect(_post_init, sender=model, dispatch_uid=f"{uid}.post_init")
    signals.pre_save.connect(_pre_save, sender=model, dispatch_uid=f"{uid}.pre_save")
    signals.post_save.connect(_post_save, sender=model, dispatch_uid=f"{uid}.post_save")
    signals.pre_delete.connect(_pre_delete, sender=model, dispatch_uid=f"{uid}.pre_delete")
    signals.post_delete.connect(_post_delete, sender=model, dispatch_uid=f"{uid}.post_delete")
    for through in throughs(model):
        m2m.connect(through)


def disconnect(model: type[models.Model]) -> None:
    uid = f"django_tagcache.{model._meta.label_lower}"
    model_signals = (signals.post_init, signals.pre_save, signals.post_save, signals.pre_delete)
    for signal in (*model_signals, signals.post_delete):
        signal.disconnect(sender=model, dispatch_uid=f"{uid}.{signal_name(signal)}")
    for through in throughs(model):
        m2m.connect(through, disconnect=True)


def signal_name(signal: object) -> str:
    names = {
        id(signals.post_init): "post_init",
        id(signals.pre_save): "pre_save",
        id(signals.post_save): "post_save",
        id(signals.pre_delete): "pre_delete",
        id(signals.post_delete): "post_delete",
    }
    return names[id(signal)]


def _snapshot(instance: models.Model) -> None:
    instance.__dict__[SNAPSHOT] = values_of(instance, registry.snapshot_names(type(instance)))


def _post_init(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    _snapshot(instance)
    fences.mark_loaded(instance)  # what is cached from it may be no fresher than this moment


def _before_values(
    model: type[models.Model], instance: models.Model, using: str, deferred: bool
) -> dict[str, Any] | None:
    """Values of the row as stored before this save, or None for a row that does not exist yet.

    ``deferred``: the save's first statement reads the stored row (:func:`_stored_tags`), so
    these are what the instance believes, read from nowhere.
    """
    names = registry.snapshot_names(model)
    if deferred:
        snapshot: dict[str, Any] = instance.__dict__.get(SNAPSHOT, {})
        if not instance._state.adding and all(name in snapshot for name in names):
            return snapshot
        return None
    if protections.on("stored_row"):
        return _stored_row(model, instance, using)
    snapshot = instance.__dict__.get(SNAPSHOT, {})
    pk = snapshot.get("pk") if not instance._state.adding else instance.pk
    if pk is None:
        return None
    if not instance._state.adding and all(name in snapshot for name in names):
        return snapshot
    # Rare paths, one query: a row saved through a new instance with an explicit primary key, or
    # an instance loaded with some tag fields deferred.
    pk_name = model._meta.pk.attname
    wanted = [name if name != "pk" else pk_name for name in names]
    row = model._base_manager.using(using).filter(pk=pk).values(*wanted).first()
    if row is None:
        return None
    row["pk"] = pk
    return row


def _stored_row(model: type[models.Model], instance: models.Model, using: str) -> dict[str, Any] | None:
    """The tag values of the row this save overwrites, read from the database: one query (none
    for a model whose tags come from its primary key alone).

    The instance's own snapshot can be stale (another editor saved the row since it was loaded)
    or name another row (its primary key was changed), and its tags would then miss the ones the
    row really leaves. Inside a transaction the row is locked (SELECT ... FOR UPDATE where the
    database has it), so no concurrent save can slip between this read and the write. Outside
    one, the read waits for the save's first statement (:func:`_stored_tags`).
    """
    if instance.pk is None:
        return None
    names = registry.snapshot_names(model)
    if names == ("pk",):
        # Tags rendered from the primary key alone: the row this save overwrites, if any, is the
        # one with this primary key (the UPDATE's own condition), so its tags are known unread.
        return {"pk": instance.pk}
    connection = connections[using]
    lock = connection.in_atomic_block and connection.features.has_select_for_update
    return storedrow.read(model, instance.pk, names, using, lock=lock)


def _stored_tags(instance: models.Model, using: str) -> set[str]:
    """The tags of the row a save begun outside a transaction overwrites, read locked right
    before its first statement, in one transaction with it (sqlwatch)."""
    model = type(instance)
    names = registry.snapshot_names(model)
    lock = connections[using].features.has_select_for_update
    row = storedrow.read(model, instance.pk, names, using, lock=lock)
    return registry.tags(model, row) if row is not None else set()


def _reads_with_its_write(model: type[models.Model], instance: models.Model, using: str) -> bool:
    """Whether the save reads the row it overwrites with its first statement, in one transaction
    with it: a save begun outside a transaction, of a row that may exist, with tags read from
    more than its primary key."""
    return (
        instance.pk is not None
        and not connections[using].in_atomic_block
        and registry.snapshot_names(model) != ("pk",)
        and protections.on("stored_row")
    )


def _pre_save(
    sender: type[models.Model], instance: models.Model, raw: bool, using: str, **kwargs: Any
) -> None:
    deferred = _reads_with_its_write(sender, instance, using)
    before = _before_values(sender, instance, using, deferred)
    tags = registry.tags(sender, before) if before is not None else set()
    expected = values_of(instance, registry.snapshot_names(sender))
    if expected != before:  # most saves leave the tag fields alone: then the tags are the same
        plain = {name: value for name, value in expected.items() if not hasattr(value, "resolve_expression")}
        tags |= registry.tags(sender, plain)
    instance.__dict__[BEFORE] = (before, expected, tags)
    # Should another app's post_save receiver raise before ours runs, these tags are still
    # invalidated: with the transaction, or, outside one, when sqlwatch forgets the save.
    sqlwatch.saving(instance, sender, using, tags, _stored_tags if deferred else None)


def _post_save(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    before, expected, tags = instance.__dict__.pop(BEFORE, (None, None, set()))
    names = registry.snapshot_names(sender)
    after = values_of(instance, names)
    if after != before:  # most saves leave the tag fields alone: then the tags are the same
        if any(hasattr(value, "resolve_expression") for value in after.values()):
            after = _stored_after(sender, instance, names, using)
            tags = tags | registry.tags(sender, after)
        elif after != expected:  # a new row's primary key, a value set by a field's pre_save()
            tags = tags | registry.tags(sender, after)
    tags |= sqlwatch.saved(instance)
    instance.__dict__[SNAPSHOT] = after
    # The instance holds the row as saved: once the invalidation completes, it may count as read
    # then rather than when it was loaded (ownsaves.py), if its tags all moved with this save.
    own = registry.tags(sender, after)
    transaction.add(tags, using, ownsaves.noted(instance, own) if own <= tags else None)


def _pre_delete(
    sender: type[models.Model], instance: models.Model, using: str, origin: object = None, **kwargs: Any
) -> None:
    # Only the instance the caller handed to delete() can be out of date: the rows a cascade
    # reaches were just read by Django's Collector. Django sends this inside the delete's
    # transaction, before the DELETE, so the row read (and locked) is the one deleted.
    if origin is not instance or instance.pk is None or not protections.on("stored_row"):
        return
    if registry.snapshot_names(sender) != ("pk",):  # pk-only tags are right whatever the instance holds
        instance.__dict__[STORED] = _stored_row(sender, instance, using)


def _stored_after(
    model: type[models.Model], instance: models.Model, names: tuple[str, ...], using: str
) -> dict[str, Any]:
    """The values a save stored where a field was given an expression (``F("price") + 1``): the
    database computed them, so read them back (one query, inside the save's transaction if any).

    In autocommit the row is read after its commit: a concurrent save in between makes this
    invalidate that save's values, and that save invalidates these, as its row before.
    """
    row = storedrow.read(model, instance.pk, names, using, lock=False)
    return row if row is not None else {"pk": instance.pk}  # deleted meanwhile: its pk tags


def _post_delete(sender: type[models.Model], instance: models.Model, using: str, **kwargs: Any) -> None:
    names = registry.snapshot_names(sender)
    tags = registry.tags(sender, values_of(instance, names))
    snapshot = instance.__dict__.get(SNAPSHOT)
    if snapshot:
        tags |= registry.tags(sender, snapshot)
    stored = instance.__dict__.pop(STORED, None)
    if stored:
        tags |= registry.tags(sender, stored)
    transaction.add(tags, using)
