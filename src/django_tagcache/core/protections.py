"""Switches for the freshness protections, so that the tests can prove each one is needed.

Production code never turns one off. The interleaving harness (tests/test_interleavings.py)
switches off one protection at a time and must then find a stale value: a protection whose
absence nobody can observe would prove nothing. No Django in here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: Every protection that can be switched off, with what it guards.
NAMES = {
    "generation": "a write is checked against the generations read at the miss",
    "drain_guard": "no write while an invalidation of one of its tags is still draining",
    "alias_marks": (
        "an invalidation spanning several cache aliases marks its tags in progress in every alias "
        "before it invalidates any, until it has invalidated all"
    ),
    "fence": "no write if a tag's last invalidation completed after its data may have been read",
    "stored_row": "a save invalidates the tags of the row as stored, not as the instance remembers it",
    "namespace_scan": "a purge of every namespace finds namespaces by their generations too",
    "query_start": "an instance counts as loaded when the query its row came from started",
    "computing": "a get_or_set/@cached whose compute was served a stale value does not store",
    "own_save_check": (
        "a saved instance counts as read when its own invalidation completed only if no other "
        "invalidation of its tags completed since it was loaded"
    ),
    "near_flush": "the near cache is emptied when its tracking channel breaks and when it comes back",
    "near_ticket": "the near cache keeps no value read before tracking covered it, or raced by a push",
    "own_save_alone": (
        "a saved instance is dated by its transaction's invalidation only if no other write of that "
        "transaction touched its tags"
    ),
    "own_save_values": "a saved instance is dated only if every value it holds is stored as it is held",
    "snapshot_floor": (
        "inside a transaction that reads from one snapshot, a load time is no later than the start "
        "of the transaction's first query"
    ),
}

# Process-global on purpose (a test switch, read on miss paths only); empty in production.
_off: set[str] = set()


def on(name: str) -> bool:
    """Whether protection ``name`` is active (always, outside the mutation tests)."""
    return name not in _off


@contextmanager
def switched_off(name: str) -> Iterator[None]:
    """Within the block, protection ``name`` is off (tests only)."""
    if name not in NAMES:
        raise ValueError(f"Unknown protection {name!r}; one of {sorted(NAMES)}.")
    _off.add(name)
    try:
        yield
    finally:
        _off.discard(name)
