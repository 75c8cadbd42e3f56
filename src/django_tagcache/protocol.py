"""Script arguments and replies, without I/O: what a synchronous or an asyncio store shares.

Each ``plan_*`` function returns the keys and arguments of one bundled script; each ``parse_*``
reads its reply. :class:`~django_tagcache.store.TagStore` sends them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conf import RetrySettings
    from .keys import KeyScheme


@dataclass(frozen=True)
class StoreOptions:
    """Everything the store needs from settings, passed in explicitly."""

    key_prefix: str = "tagcache"
    chunk_size: int = 2000
    generation_ttl_ms: int = 86_400_000
    prune_per_write: int = 64
    index_slack_ms: int = 1000
    tombstone_ttl_ms: int = 10_000  # Redis Cluster only, see cluster_store.py
    retry: RetrySettings | None = None


def new_token() -> str:
    """A generation token: random, so no token ever comes back after an eviction or restart."""
    return os.urandom(16).hex()


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
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of write.lua. ``ttl_ms`` 0 means no expiry; ``owner`` releases a recompute lock."""
    keys = [entry, *(scheme.tag(tag) for tag in tags)]
    args: list[Any] = [
        payload,
        ttl_ms,
        0 if expected is None else 1,
        options.prune_per_write,
        options.index_slack_ms,
        owner,
    ]
    if expected is not None:
        args += expected
    return keys, args


def plan_generations(
    scheme: KeyScheme, options: StoreOptions, tags: Sequence[str]
) -> tuple[list[str], list[Any]]:
    keys = [scheme.generation(tag) for tag in tags]
    args: list[Any] = new_tokens(len(tags))
    args.append(options.generation_ttl_ms)
    return keys, args


def plan_miss(
    scheme: KeyScheme, options: StoreOptions, entry: str, tags: Sequence[str], owner: str, lock_ttl_ms: int
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of miss.lua; an empty ``owner`` takes no lock."""
    keys = [entry, *(scheme.tag(tag) for tag in tags)]
    return keys, [owner, lock_ttl_ms, options.generation_ttl_ms, *new_tokens(len(tags))]


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


def parse_miss(reply: Sequence[Any], owner: str) -> Miss:
    return Miss(
        tokens=[text(token) for token in reply[3:]],
        payload=reply[1] or None,
        owner=owner if int(reply[0]) == 1 else "",
        stale=reply[2] or None,
    )


def plan_invalidate(
    scheme: KeyScheme, options: StoreOptions, tags: Sequence[str], stale_ms: Sequence[int] | None = None
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of invalidate.lua; ``stale_ms`` gives each tag's staleness budget (default 0)."""
    keys = [scheme.tag(tag) for tag in tags]
    budgets = list(stale_ms) if stale_ms is not None else [0] * len(tags)
    return keys, [options.chunk_size, options.generation_ttl_ms, *new_tokens(len(tags)), *budgets]


def parse_invalidate(reply: Sequence[Any]) -> tuple[int, list[tuple[str, str]]]:
    """(entries removed, [(renamed index, pending set), ...] still to drain)."""
    removed = int(reply[0])
    rest = [text(item) for item in reply[1:]]
    pending = sorted(set(zip(rest[0::2], rest[1::2], strict=True)))
    return removed, pending
