"""``tagcache_verify``: recompute a sample of cached ``@cached`` results now, and compare.

The argument sets come from Redis (kept by the auditor's thread after ``@cached`` writes, at most
``AUDIT['VERIFY_SAMPLES']`` per function: see :mod:`django_tagcache.core.shadow_records`). For
each one whose entry is still cached, the function runs again (cached calls inside it bypass the
cache) and its result is compared with the entry (``audit_compare=``, ``AUDIT['COMPARE']`` or
``==``). A difference counts as stale when the entry is still there, unchanged, after the
recompute; if it was invalidated or replaced meanwhile, the cache caught up (``late``).

A kept call is a pickle of the call as it was made: a model instance in it holds its row as it was
when the entry was written. Recomputed from that copy, a stale entry would agree with itself, so
each instance is read again by primary key first (:func:`reread`).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import models, router

from ..caching.decorators import CachedFunction, registered
from ..caching.namespaces import in_namespace
from ..caching.shadow import agree, bypass
from ..conf import conf
from ..core import serialization, shadow_records

if TYPE_CHECKING:
    from ..core.store import TagStore


@dataclass
class Verified:
    """What one function's sample gave."""

    function: str
    checked: int = 0
    stale: int = 0
    late: int = 0
    expired: int = 0
    errors: int = 0
    oldest_stale_age: float | None = None
    stale_keys: list[str] = field(default_factory=list)
    problem: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_function(name: str) -> CachedFunction[Any, Any] | None:
    """The ``@cached`` function of dotted name ``name``: defined already, or importable."""
    found = registered().get(name)
    if found is not None:
        return found
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            target = getattr(target, attribute, None)
        return target if isinstance(target, CachedFunction) else None
    return None


def verify(store: TagStore, *, limit: int | None = None, only: list[str] | None = None) -> list[Verified]:
    """Check up to ``limit`` kept calls of each function (of ``only``, if given)."""
    results = []
    for name in shadow_records.functions(store):
        if only and name not in only:
            continue
        result = Verified(name)
        results.append(result)
        function = find_function(name)
        if function is None:
            result.problem = "not importable: no @cached function by that name"
            continue
        for entry, namespace, call in shadow_records.calls(store, name)[:limit]:
            with in_namespace(namespace):
                _check(store, function, entry, call, result)
    return results


def reread(value: Any) -> Any:
    """``value`` with every saved model instance in it (nested in lists, tuples, sets and dicts) read
    again from the database by primary key; a row that is gone raises ``DoesNotExist``."""
    if isinstance(value, models.Model):
        if value.pk is None:
            return value  # never saved: there is no row to read
        model = type(value)
        using = value._state.db or router.db_for_read(model, instance=value)
        return model._base_manager.using(using).get(pk=value.pk)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple takes its items one by one
        return type(value)(*(reread(item) for item in value))
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(reread(item) for item in value)
    if isinstance(value, dict):
        return {key: reread(item) for key, item in value.items()}
    return value


def _check(
    store: TagStore, function: CachedFunction[Any, Any], entry: str, call: Any, result: Verified
) -> None:
    raw = store.get(entry)
    loaded = None if raw is None else serialization.loads(raw)
    if raw is None or loaded is None:
        result.expired += 1
        return
    try:
        args, kwargs = reread(call)
        with bypass():
            fresh = function.__wrapped__(*args, **kwargs)
        same = agree(function.audit_compare or conf.AUDIT.compare, loaded[0], fresh)
    except Exception:  # a failing recompute or compare is reported, not raised
        result.errors += 1
        return
    result.checked += 1
    if same:
        return
    if store.get(entry) != raw:
        result.late += 1
        return
    result.stale += 1
    result.stale_keys.append(entry)
    written = serialization.written_at(raw)
    if written is not None:
        age = max(0.0, time.time() - written)
        result.oldest_stale_age = max(age, result.oldest_stale_age or 0.0)
