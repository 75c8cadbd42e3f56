"""Instances that saved themselves: dated by their own invalidation once it completes.

A save's invalidation completes after the instance was loaded, so its load time would refuse
everything cached from it afterwards. Each save notes the instance, its load time and the tags
of the row as saved; when the transaction's invalidation has completed, each instance is dated
by it if no other invalidation of those tags completed in between
(:func:`~django_tagcache.caching.fences.date_by_own_save`). No query, no round trip: the
invalidation script reports the completion times it replaced.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..caching import fences
from ..conf import conf
from ..core import completions

if TYPE_CHECKING:
    from django.db import models

#: (the instance, when its data was read before the save, every tag of the row as saved)
Saved = tuple["weakref.ref[Any]", float, frozenset[str]]


def noted(instance: models.Model, tags: Iterable[str]) -> Saved | None:
    """What dating ``instance`` needs once its save's invalidation completes (None: nothing to date)."""
    loaded = fences.load_time(instance)
    if loaded is None:
        return None
    return weakref.ref(instance), loaded, frozenset(tags)


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
