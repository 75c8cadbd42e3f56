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
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from ..caching.namespaces import in_namespace
from ..caching.origins import invalidating_as
from ..core.protocol import encoded, text

if TYPE_CHECKING:
    from ..caching.api import TagCache
    from ..core.events import Event

if TYPE_CHECKING:
    from ..core.store import TagStore


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
    # Every (tag, producer) pair of the batch, each producer's pairs in one run (event_marks.lua).
    pairs = sorted({(tag, event.producer) for event in events for tag in event.tags}, key=_PRODUCER)
    bases = store.keys.tags([tag for tag, _producer in pairs])  # the namespace asked once
    scores = _read_marks(store, bases, [producer for _tag, producer in pairs])
    # Events in stream order; each raises the marks it passes, so that an exact duplicate or an
    # older event within the same batch counts as a duplicate too.
    marks = {pair: int(score or 0) for pair, score in zip(pairs, scores, strict=True)}
    todo: dict[str, None] = {}  # the tags to invalidate (a dict takes one without a call)
    for event in events:
        seq, producer, fresh = event.seq, event.producer, False
        for tag in event.tags:
            if seq > marks[tag, producer]:
                marks[tag, producer] = seq
                todo[tag] = None
                fresh = True
        if fresh:
            outcome.applied += 1
            outcome.newest_ts_us.append(event.ts_us)
        else:
            outcome.duplicates += 1
    if not todo:
        return
    cache.invalidate_normalized(tuple(sorted(todo)))
    outcome.tags += len(todo)
    # Each pair's mark is now the newest seq the batch has for it, or its stored mark when no event
    # of the batch is above it: raising it to that changes nothing (ZADD GT).
    raised = [
        (base, pair[1], marks[pair]) for base, pair in zip(bases, pairs, strict=True) if pair[0] in todo
    ]
    _raise_marks(store, raised, mark_ttl_ms)


_PRODUCER = itemgetter(1)  # of a (tag, producer) pair; called from C, no Python call per pair


def _runs(producers: list[str]) -> list[tuple[str, int]]:
    """(producer, how many in a row) for a list grouped by producer."""
    return [(producer, len(list(run))) for producer, run in groupby(producers)]


def _read_marks(store: TagStore, bases: list[str], producers: list[str]) -> list[Any]:
    """The mark of each (tag base, producer): one script call on one server, a pipeline on a cluster."""
    if store.standalone:
        args: list[Any] = ["get", 0]
        for producer, count in _runs(producers):
            args += [producer, count]
        joined = store.scripts("event_marks", encoded(bases), args)
        return list(map(int, text(joined).split(","))) if bases else []
    pipe = store.client.pipeline(transaction=False)
    for base, producer in zip(bases, producers, strict=True):
        pipe.zscore(base + ":v", producer)
    return list(pipe.execute())


def _raise_marks(store: TagStore, raised: list[tuple[str, str, int]], ttl_ms: int) -> None:
    """Raise each mark to its sequence number (never lower it: ZADD GT), and let it expire."""
    if store.standalone:
        args: list[Any] = ["set", ttl_ms]
        first = 0
        for producer, count in _runs([producer for _base, producer, _seq in raised]):
            seqs = [str(seq) for _base, _producer, seq in raised[first : first + count]]
            args += [producer, ",".join(seqs)]
            first += count
        store.scripts("event_marks", encoded([base for base, _producer, _seq in raised]), args)
        return
    pipe = store.client.pipeline(transaction=False)
    for base, producer, seq in raised:
        pipe.zadd(base + ":v", {producer: seq}, gt=True)
        pipe.pexpire(base + ":v", ttl_ms)
    pipe.execute()
