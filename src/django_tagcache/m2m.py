"""Many-to-many relations: changes made through the related managers.

A change invalidates, on both sides, each row's model tag, instance tag and declared tags
(``Meta.cache_tags``). Rendering a declared tag that needs more than the primary key reads the
related rows once per change (one query); the instance whose manager changed uses the values it
holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db.models import signals

from . import transaction
from .registry import registry, values_of

if TYPE_CHECKING:
    from django.db import models

PRE_CLEAR = "_tagcache_cleared"


def throughs(model: type[models.Model]) -> list[type[models.Model]]:
    """Intermediate models of every many-to-many relation of ``model``, from either side."""
    found = [f.remote_field.through for f in model._meta.many_to_many]
    found += [rel.through for rel in model._meta.related_objects if rel.many_to_many]  # type: ignore[attr-defined]
    return [through for through in found if isinstance(through, type)]


def connect(through: type[models.Model], *, disconnect: bool = False) -> None:
    """(Dis)connect the receivers of one intermediate model (idempotent: a dispatch_uid each)."""
    uid = f"django_tagcache.m2m.{through._meta.label_lower}"
    receivers: dict[str, Any] = {"m2m_changed": _m2m_changed}
    for name, receiver in receivers.items():
        signal = signals.m2m_changed
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
    tags |= related_tags(model, related, using)
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
