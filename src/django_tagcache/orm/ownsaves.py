"""Instances that saved themselves: dated by their own invalidation once it completes.

A save's invalidation completes after the instance was loaded, so its load time would refuse
everything cached from it afterwards. Each save notes the instance, its load time and the tags
of the row as saved; when the transaction's invalidation has completed, each instance is dated
by it if no other invalidation of those tags completed in between
(:func:`~django_tagcache.caching.fences.date_by_own_save`). No query, no round trip: the
invalidation script reports the completion times it replaced.

Two more conditions, checked here, make "the instance holds the row as stored" true:

* **Its values are the stored ones** (:func:`holds_as_stored`): a value the database normalises
  on the way in (``"07"`` for an integer, a naive datetime, more decimal places than the column
  keeps) is stored differently from what the instance keeps, so such an instance is not noted.
* **Its save is the only write of its tags in the batch** (:func:`alone`): a transaction's
  writes share one invalidation at commit, so another write of the same row in it (an
  ``update()``, another instance's save, a delete, an m2m change, raw SQL seen by the statement
  watcher) shows no completion of its own in between. An instance is dated only if every other
  write of the batch touched none of its tags; its own saves repeated are fine.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..caching import fences
from ..conf import conf
from ..core import completions, protections

if TYPE_CHECKING:
    from django.db import models

#: (the instance, when its data was read before the save, every tag of the row as saved)
Saved = tuple["weakref.ref[Any]", float, frozenset[str]]

#: The writer of a tag in a batch that is not one noted save (see :func:`alone`).
OTHER = object()
#: A tag written by more than one writer in a batch.
MANY = object()

# Field types whose Python values come back from the database as they went in, when
# ``to_python(get_prep_value(value))`` gives the same value of the same type. Any other field
# (JSON, binary, files, network addresses, custom fields) makes the instance undatable: when in
# doubt, don't date.
_ROUND_TRIPPING = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
        "BooleanField",
        "CharField",
        "TextField",
        "SlugField",
        "DateField",
        "DateTimeField",
        "TimeField",
        "DecimalField",
        "FloatField",
        "UUIDField",
        "DurationField",
        "ForeignKey",
        "OneToOneField",
    }
)
_PLAIN = (
    bool,
    int,
    float,
    str,
    decimal.Decimal,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
)


def _stored_as_is(field: Any, value: Any) -> bool:
    """Whether ``value`` of ``field`` reads back from the database exactly as it is held."""
    if value is None:
        return bool(field.null)
    if type(value) not in _PLAIN:  # an expression, a lazy or marked-safe string, a subclass
        return False
    if field.get_internal_type() not in _ROUND_TRIPPING or getattr(field, "generated", False):
        return False
    try:
        back = field.to_python(field.get_prep_value(value))
    except Exception:  # a value the field rejects: the save would have failed
        return False
    if type(back) is not type(value) or back != value:
        return False
    if isinstance(value, decimal.Decimal):
        # The column keeps ``decimal_places``: 1.5 reads back as 1.50, 1.555 as 1.56.
        places = getattr(field, "decimal_places", None)
        return places is not None and value.is_finite() and value.as_tuple().exponent == -places
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        # Read back in UTC: the same instant, but shown differently in another offset.
        return value.utcoffset() == datetime.timedelta(0)
    return True


# Django's own field classes whose value of exactly one type reads back unchanged: for an int
# in an integer column or a str in a text column, ``to_python(get_prep_value(value))`` is the
# value itself, so :func:`_stored_as_is` needs no call. Exact classes only: a subclass may
# convert, and then takes the full check.
_INTEGER_FIELDS = (
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
)
_TEXT_FIELDS = ("CharField", "TextField", "SlugField")

# Model -> (attname, field, the type whose values need no check or None), per concrete field.
_plans: weakref.WeakKeyDictionary[type[Any], tuple[tuple[str, Any, type | None], ...]] = (
    weakref.WeakKeyDictionary()
)


def _plain_type(field: Any) -> type | None:
    """The type whose values ``field`` stores as they are held, known without a call (see above)."""
    from django.db import models

    if field.many_to_one and type(field) is models.ForeignKey:
        field = field.target_field
    kind = type(field)
    if kind in tuple(getattr(models, name) for name in _INTEGER_FIELDS):
        return int
    if kind in tuple(getattr(models, name) for name in _TEXT_FIELDS):
        return str
    return None


def _plan(model: type[Any]) -> tuple[tuple[str, Any, type | None], ...]:
    plan = _plans.get(model)
    if plan is None:
        plan = _plans[model] = tuple(
            (field.attname, field, _plain_type(field)) for field in model._meta.concrete_fields
        )
    return plan


def holds_as_stored(instance: models.Model) -> bool:
    """Whether every concrete field value ``instance`` holds is the value the database stores.

    Fields not loaded (deferred) are skipped: reading one later reads the row then.
    """
    if not protections.on("own_save_values"):
        return True
    held = instance.__dict__
    for attname, field, plain in _plan(type(instance)):
        if attname in held:
            value = held[attname]
            if type(value) is not plain and not _stored_as_is(field, value):
                return False
    return True


def noted(instance: models.Model, tags: Iterable[str]) -> Saved | None:
    """What dating ``instance`` needs once its save's invalidation completes (None: nothing to date)."""
    loaded = fences.load_time(instance)
    if loaded is None or not holds_as_stored(instance):
        return None
    return weakref.ref(instance), loaded, frozenset(tags)


def record_writer(
    writers: dict[str, object], tags: Iterable[str], saved: Saved | None, writer: Any = None
) -> None:
    """Note in ``writers`` (tag -> its only writer in the batch, or MANY) who wrote ``tags``.

    The writer of a save is its instance's weak reference (CPython keeps one per live instance;
    should two differ, the tags count as written twice: undated, the safe side), ``writer`` for
    the statements of a save in progress, of any other write :data:`OTHER`.
    """
    writer = saved[0] if saved is not None else writer if writer is not None else OTHER
    for tag in tags:
        known = writers.setdefault(tag, writer)
        if known is not writer:
            writers[tag] = MANY


def merge_writers(into: dict[str, object], writers: Mapping[str, object]) -> None:
    """Add the writers of another batch (or savepoint level) to ``into``."""
    for tag, writer in writers.items():
        known = into.setdefault(tag, writer)
        if known is not writer:
            into[tag] = MANY


def alone(saved: Saved, writers: Mapping[str, object]) -> bool:
    """Whether the instance of ``saved`` is the only writer of each of its tags in the batch."""
    if not protections.on("own_save_alone"):
        return True
    ref = saved[0]
    return all(writers.get(tag, ref) is ref for tag in saved[2])


@contextmanager
def dating(saved: Iterable[Saved]) -> Iterator[None]:
    """Around a flush's invalidation: if it succeeds, date each saved instance by it."""
    saved = list(saved)
    if not saved:
        yield
        return
    with completions.collecting() as found:
        yield
    margin = conf.CLOCK_SKEW_MARGIN
    for ref, loaded, tags in saved:
        instance = ref()
        if instance is not None:
            fences.date_by_own_save(instance, loaded, tags, found, margin)
