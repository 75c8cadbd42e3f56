"""Applying a batch of events to this service's Redis: idempotent and order-safe.

Per tag (and namespace), Redis keeps the newest sequence number applied from each producer (a
ZSET ``<tag base>:v``: producer -> seq, raised only with ``ZADD GT``). An event whose sequence is
not above that mark for any of its tags has nothing left to do: its invalidation, or a newer one
of the same tags by the same producer, was applied already (docs/events.md says why a newer one
covers it). The tags still to do are invalidated in one call per namespace (the store slices them
into script calls of 200, pipelined), and only then are the marks raised: a crash in between
applies the events again, which is harmless, never not at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..caching.namespaces import in_namespace
from ..caching.origins import invalidating_as

if TYPE_CHECKING:
    from ..caching.api import TagCache
    from ..core.events import Event


@dataclass
class Outcome:
    """What one batch did: events applied, events with nothing left to apply, tags invalidated."""

    applied: int = 0
    duplicates: int = 0
    tags: int = 0
    newest_ts_us: list[int] = field(default_factory=list)


def apply_events(cache: TagCache, events: Sequence[Event], mark_ttl_ms: int) -> Outcome:
    """Invalidate what ``events`` still ask for in this service's Redis; raises if Redis fails.

    Nothing here is announced as an event of this service (no echo between services).
    """
    outcome = Outcome()
    by_namespace: dict[str | None, list[Event]] = defaultdict(list)
    for event in events:
        by_namespace[event.namespace].append(event)
    for namespace, group in by_namespace.items():
        with in_namespace(namespace), invalidating_as(None):
            _apply_group(cache, group, mark_ttl_ms, outcome)
    return outcome


def _apply_group(cache: TagCache, events: Sequence[Event], mark_ttl_ms: int, outcome: Outcome) -> None:
    store = cache.store
    wanted: dict[tuple[str, str], int] = {}  # (tag, producer) -> newest seq in this batch
    for event in events:
        for tag in event.tags:
            key = (tag, event.producer)
            wanted[key] = max(wanted.get(key, 0), event.seq)
    pairs = list(wanted)
    pipe = store.client.pipeline(transaction=False)
    for tag, producer in pairs:
        pipe.zscore(store.keys.tag(tag) + ":v", producer)
    # Events in stream order; each raises the marks it passes, so that an exact duplicate or an
    # older event within the same batch counts as a duplicate too.
    marks = {pair: int(score or 0) for pair, score in zip(pairs, pipe.execute(), strict=True)}
    todo: set[str] = set()
    for event in events:
        fresh = [tag for tag in event.tags if event.seq > marks[tag, event.producer]]
        for tag in fresh:
            marks[tag, event.producer] = event.seq
        if fresh:
            todo.update(fresh)
            outcome.applied += 1
            outcome.newest_ts_us.append(event.ts_us)
        else:
            outcome.duplicates += 1
    if not todo:
        return
    cache.invalidate_normalized(tuple(sorted(todo)))
    outcome.tags += len(todo)
    pipe = store.client.pipeline(transaction=False)
    for (tag, producer), seq in wanted.items():
        if tag in todo:
            mark = store.keys.tag(tag) + ":v"
            pipe.zadd(mark, {producer: seq}, gt=True)
            pipe.pexpire(mark, mark_ttl_ms)
    pipe.execute()
