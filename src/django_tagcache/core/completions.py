"""When the invalidations just made completed, and when the ones before them had: for savers.

A saved instance is dated by its load time, and its own save's invalidation completes after
that, so everything cached from it would be refused. The invalidation scripts therefore report,
for each tag, the completion time they recorded and the one they replaced (both in microseconds
on the store's clock): if no other invalidation of the instance's tags completed between its
load and its own, the instance holds the row as of its own invalidation, and may be dated by
that instead (see docs/concepts.md, "Read fences"). Nothing is reported unless a caller asks,
with :func:`collecting`. No Django in here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Completion:
    """One tag's invalidation: when it completed (None: it drains, and completes later), and
    when the tag's previous invalidation had completed (None: none is known)."""

    done: int | None
    previous: int | None


_collector: ContextVar[dict[str, Completion] | None] = ContextVar("django_tagcache_completions", default=None)


@contextmanager
def collecting() -> Iterator[dict[str, Completion]]:
    """Within the block, every invalidation in this context reports its tags' completions into the
    yielded dict (tag -> :class:`Completion`). A tag invalidated twice keeps neither: not one call."""
    found: dict[str, Completion] = {}
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)


def wanted() -> bool:
    """Whether anyone collects completions now (stores skip the work otherwise)."""
    return _collector.get() is not None


def _micros(value: object) -> int | None:
    if type(value) is int:  # what the scripts return: 0 for none
        return value or None
    if isinstance(value, bytes):
        value = value.decode()
    return int(value) or None if value not in (None, "", b"") else None  # type: ignore[call-overload]


def record(tags: Sequence[str], pairs: Sequence[object]) -> None:
    """Note the completions of ``tags``: ``pairs`` is (done, previous) per tag, flat, as the
    scripts return them (0, '' or None for none)."""
    found = _collector.get()
    if found is None:
        return
    for i, tag in enumerate(tags):
        completion = Completion(done=_micros(pairs[2 * i]), previous=_micros(pairs[2 * i + 1]))
        found[tag] = Completion(None, None) if tag in found else completion
