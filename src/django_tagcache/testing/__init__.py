"""Helpers for a project's own tests: see which tags were invalidated, and start each test clean.

They work with Django's ``TestCase`` and with pytest-django, on the in-process store (a
``LocMemCache`` alias, no Redis server needed) as on Redis. Fixtures for pytest are in
:mod:`django_tagcache.testing.plugin`, which pytest loads by itself once the package is installed.

Invalidations caused by model writes run when the transaction commits. ``TestCase`` (and pytest-django's
``django_db`` mark) wraps every test in a transaction that never commits, so wrap the code under test in
``self.captureOnCommitCallbacks(execute=True)`` (pytest-django: the ``django_capture_on_commit_callbacks``
fixture) inside :func:`assert_tags_invalidated`, or use ``TransactionTestCase``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..caching.stores import reset_stores
from ..caching.tags import normalize_tags
from ..core import memory, metrics
from ..signals import tags_invalidated

__all__ = [
    "Invalidation",
    "Invalidations",
    "assert_no_invalidations",
    "assert_tags_invalidated",
    "capture_invalidations",
    "reset_tagcache",
]

_COMMIT_HINT = (
    "Model writes invalidate when their transaction commits, and a TestCase or django_db test never "
    "commits: run the code inside self.captureOnCommitCallbacks(execute=True) (pytest-django: "
    "django_capture_on_commit_callbacks(execute=True)), or use TransactionTestCase."
)


@dataclass(frozen=True)
class Invalidation:
    """One invalidation, as the ``tags_invalidated`` signal reported it."""

    tags: tuple[str, ...]
    removed: int
    source: str | None


@dataclass
class Invalidations:
    """What :func:`capture_invalidations` saw, in order."""

    calls: list[Invalidation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tags(self) -> set[str]:
        """Every tag invalidated, by any call."""
        with self._lock:
            return {tag for call in self.calls for tag in call.tags}

    @property
    def removed(self) -> int:
        """Entries removed in all."""
        with self._lock:
            return sum(call.removed for call in self.calls)

    def __len__(self) -> int:
        return len(self.calls)

    def _receive(
        self, sender: Any, tags: tuple[str, ...], removed: int, source: str | None, **kwargs: Any
    ) -> None:
        with self._lock:
            self.calls.append(Invalidation(tuple(tags), int(removed), source))


@contextmanager
def capture_invalidations() -> Iterator[Invalidations]:
    """Record every invalidation made inside the block (any thread, any cache alias)."""
    captured = Invalidations()
    tags_invalidated.connect(captured._receive, weak=False, dispatch_uid=id(captured))
    try:
        yield captured
    finally:
        tags_invalidated.disconnect(dispatch_uid=id(captured))


@contextmanager
def assert_tags_invalidated(*sources: object, exact: bool = False) -> Iterator[Invalidations]:
    """Fail unless the block invalidates every tag of ``sources`` (strings, instances, models, querysets).

    With ``exact=True`` it also fails if any other tag was invalidated. Tag sources are read
    when the block ends, so an instance saved inside it gives its tags as they are then.
    """
    with capture_invalidations() as captured:
        yield captured
    expected = set(normalize_tags(list(sources)))
    seen = captured.tags
    missing, extra = sorted(expected - seen), sorted(seen - expected)
    if missing or (exact and extra):
        problems = [f"not invalidated: {', '.join(missing)}"] if missing else []
        if exact and extra:
            problems.append(f"invalidated but not expected: {', '.join(extra)}")
        hint = "" if seen else f" Nothing was invalidated at all. {_COMMIT_HINT}"
        seen_text = ", ".join(sorted(seen)) or "none"
        raise AssertionError(f"{'; '.join(problems)} (invalidated: {seen_text}).{hint}")


@contextmanager
def assert_no_invalidations() -> Iterator[Invalidations]:
    """Fail if the block invalidates any tag."""
    with capture_invalidations() as captured:
        yield captured
    if captured.calls:
        raise AssertionError(f"Expected no invalidation, got: {', '.join(sorted(captured.tags))}.")


def reset_tagcache(alias: str | None = None) -> None:
    """Start clean: empty the in-process store (of ``alias``, or of every alias), rebuild the stores
    from the current settings and zero the counters.

    Redis aliases are not flushed: a test run that uses a real Redis should flush its own database.
    A ``TestCase`` rolls the database back without invalidating anything, so entries cached in one
    test would otherwise outlive the rows they were computed from.
    """
    memory.reset(alias)
    reset_stores()
    metrics.reset()
