"""Script arguments and replies, without I/O: what a synchronous or an asyncio store shares.

Each ``plan_*`` function returns the keys and arguments of one bundled script; each ``parse_*``
reads its reply. :class:`~django_tagcache.core.store.TagStore` sends them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .protections import on

if TYPE_CHECKING:
    from .keys import KeyScheme
    from .timebudget import RetrySettings


@dataclass(frozen=True)
class StoreOptions:
    """Everything the store needs from settings, passed in explicitly."""

    key_prefix: str = "tagcache"
    chunk_size: int = 2000
    generation_ttl_ms: int = 86_400_000
    prune_per_write: int = 64
    index_slack_ms: int = 1000
    tombstone_ttl_ms: int = 10_000  # Redis Cluster only, see cluster_store.py
    clock_skew_margin_ms: int = 100  # subtracted from read fences (docs/concepts.md)
    drain_guard_ttl_ms: int = 60_000  # how long writes wait for a draining invalidation at most
    invalidation_replicas: int = 0  # replicas that must acknowledge an invalidation (replication.py)
    replica_timeout_ms: int = 500
    retry: RetrySettings | None = None


def new_token() -> str:
    """A generation token: random, so no token ever comes back after an eviction or restart."""
    return os.urandom(16).hex()


def new_call_token() -> str:
    """The random base of the tokens of one invalidate.lua call: 28 hex digits, to which the script
    appends each tag's number in 4, giving every tag a token of the usual 32."""
    return os.urandom(14).hex()


def new_tokens(count: int) -> list[str]:
    """``count`` generation tokens from one read of the system's random source."""
    pool = os.urandom(16 * count).hex()
    return [pool[32 * i : 32 * i + 32] for i in range(count)]


# Standalone scripts take one base key per tag and derive the tag's other keys (see the .lua files).


def plan_write(
    scheme: KeyScheme,
    options: StoreOptions,
    entry: str,
    payload: bytes,
    ttl_ms: int,
    tags: Sequence[str],
    expected: Sequence[str] | None,
    owner: str = "",
    fence_us: int = 0,
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of write.lua. ``ttl_ms`` 0 means no expiry; ``owner`` releases a recompute lock.

    A checked write (``expected`` given) is also refused while a tag's invalidation drains, and,
    with a read fence ``fence_us`` (microseconds since the epoch), if a tag's last invalidation completed
    at or after the fence minus the clock-skew margin.
    """
    keys = [entry, *scheme.tags(tags)]
    check, guard, cutoff = write_checks(options, expected, fence_us)
    args: list[Any] = [payload, ttl_ms, check, options.prune_per_write, options.index_slack_ms, owner]
    args += [guard, cutoff]
    if expected is not None:
        args += expected
    return keys, args


def write_checks(
    options: StoreOptions, expected: Sequence[str] | None, fence_us: int
) -> tuple[int, int, int]:
    """(check generations, guard against drains, fence cutoff in µs) of a write, as the scripts take them.

    The cutoff is 0 for no fence, and -1 (refuse) for a fence older than the generations live:
    completion times live as long, so an older invalidation could no longer be seen.
    """
    if expected is None:
        return 0, 0, 0
    cutoff = 0
    if fence_us and on("fence"):
        cutoff = fence_us - options.clock_skew_margin_ms * 1000
        if time.time() * 1_000_000 - fence_us >= options.generation_ttl_ms * 1000:
            cutoff = -1
    return int(on("generation")), int(on("drain_guard")), cutoff


def plan_generations(
    scheme: KeyScheme, options: StoreOptions, tags: Sequence[str], draining: bool = False
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of generations.lua; ``draining`` leaves out tags whose invalidation drains."""
    keys = [scheme.generation(tag) for tag in tags]
    if draining and on("drain_guard"):
        keys += [scheme.tag(tag) + ":w" for tag in tags]
    args: list[Any] = new_tokens(len(tags))
    args.append(options.generation_ttl_ms)
    return keys, args


def plan_miss(
    scheme: KeyScheme, options: StoreOptions, entry: str, tags: Sequence[str], owner: str, lock_ttl_ms: int
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of miss.lua; an empty ``owner`` takes no lock."""
    keys = [entry, *scheme.tags(tags)]
    draining = int(on("drain_guard"))
    return keys, [owner, lock_ttl_ms, options.generation_ttl_ms, draining, *new_tokens(len(tags))]


@dataclass(frozen=True)
class Miss:
    """What a miss found: the generation tokens to check the write against, the entry if it
    appeared meanwhile, and ``owner``: the lock token if this caller is the one to recompute."""

    tokens: list[str]
    payload: bytes | None
    owner: str
    stale: bytes | None = None  # the copy a soft purge kept, if any


def text(value: Any) -> str:
    """A reply element as text: clients without decode_responses return bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def encoded(strings: Sequence[str]) -> Sequence[Any]:
    """``strings`` as UTF-8 bytes, encoded in a few calls for all of them.

    redis-py encodes a ``str`` argument in about seven Python calls and a ``bytes`` one in two:
    for the thousand keys of a batch of events that is ten thousand calls saved. Strings holding
    the separator (a newline: no tag can hold one), or not all strings, are returned as they are.
    """
    if not strings:
        return strings
    try:
        joined = "\n".join(strings)
    except TypeError:  # bytes already (a client without decode_responses)
        return strings
    if joined.count("\n") != len(strings) - 1:
        return strings
    return joined.encode().split(b"\n")


def parse_miss(reply: Sequence[Any], owner: str) -> Miss:
    return Miss(
        tokens=[text(token) for token in reply[3:]],
        payload=reply[1] or None,
        owner=owner if int(reply[0]) == 1 else "",
        stale=reply[2] or None,
    )


def plan_invalidate(
    scheme: KeyScheme,
    options: StoreOptions,
    tags: Sequence[str],
    stale_ms: Sequence[int] | None = None,
    event: Sequence[Any] = (),
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of invalidate.lua; ``stale_ms`` gives each tag's staleness budget (default 0).

    ``event``, from :func:`~django_tagcache.core.events.event_args`, makes the same call append the
    event that announces this invalidation; empty, the script does nothing more. The arguments
    stay few whatever the number of tags: one random token for the call (each tag's is derived
    from it), and budgets only when one of them is not 0.
    """
    budgets: Sequence[int] = stale_ms if stale_ms is not None and any(stale_ms) else ()
    return scheme.tags(tags), [
        options.chunk_size,
        options.generation_ttl_ms,
        options.drain_guard_ttl_ms,
        new_call_token(),
        len(budgets),
        *budgets,
        *event,
    ]


def parse_invalidate(reply: Sequence[Any], ntags: int) -> tuple[int, list[tuple[str, str]]]:
    """(entries removed, [(renamed index, pending set), ...] still to drain) of a call on ``ntags`` tags.

    The completion times of each tag that follow the count are read by :func:`completions_of`.
    """
    removed = int(reply[0])
    if len(reply) == 1 + 2 * ntags:
        return removed, []  # nothing to drain: the common case
    rest = [text(item) for item in reply[1 + 2 * ntags :]]
    pending = sorted(set(zip(rest[0::2], rest[1::2], strict=True)))
    return removed, pending


def completions_of(reply: Sequence[Any], ntags: int) -> Sequence[Any]:
    """(done, previous) completion times of each tag of an invalidate.lua reply, flat (see
    :mod:`~django_tagcache.core.completions`)."""
    return reply[1 : 1 + 2 * ntags]
