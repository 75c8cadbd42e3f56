"""The Redis side: entries, tag indexes and generations. No Django in here.

Layout, for a tag ``T`` (``P`` is the cache backend's key prefix and version, ``tagcache`` the
``KEY_PREFIX`` setting)::

    P:tagcache:e:<key>            an entry: the serialized value, with the entry's TTL
    P:tagcache:t:{T}:i            index of T: ZSET of entry keys scored by their expiry (ms)
    P:tagcache:t:{T}:g            generation of T: a random token, replaced on every invalidation
    P:tagcache:t:{T}:p            pending set of T: indexes renamed aside and not yet drained
    P:tagcache:t:{T}:i:<token>    an index renamed aside by an invalidation too big for one call

The braces make a tag's keys share one Redis Cluster hash slot, so each script touches one slot
per tag. The functions ``plan_*``/``parse_*`` build script arguments and read replies without
doing I/O, so that another transport (an asyncio client) can reuse them; :class:`TagStore`
is the thin synchronous I/O layer on top.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .retry import call_with_retry
from .scripts import ScriptRunner

if TYPE_CHECKING:
    import redis

    from .conf import RetrySettings

T = TypeVar("T")
MakeKey = Callable[[str, "int | None"], str]


@dataclass(frozen=True)
class StoreOptions:
    """Everything the store needs from settings, passed in explicitly."""

    key_prefix: str = "tagcache"
    chunk_size: int = 2000
    generation_ttl_ms: int = 86_400_000
    prune_per_write: int = 64
    index_slack_ms: int = 1000
    retry: RetrySettings | None = None


def new_token() -> str:
    """A generation token: random, so no token ever comes back after an eviction or restart."""
    return os.urandom(16).hex()


def new_tokens(count: int) -> list[str]:
    """``count`` generation tokens from one read of the system's random source."""
    pool = os.urandom(16 * count).hex()
    return [pool[32 * i : 32 * i + 32] for i in range(count)]


class KeyScheme:
    """Builds every Redis key from the cache backend's ``make_key`` (KEY_PREFIX, VERSION, KEY_FUNCTION)."""

    def __init__(self, make_key: MakeKey, prefix: str) -> None:
        self._make_key = make_key
        self._entry = f"{prefix}:e:"
        self._tag = f"{prefix}:t:"
        # Hot tags (model tags, popular instances) recur on every write: remember their keys.
        self._tags: dict[str, str] = {}

    def entry(self, key: str, version: int | None = None) -> str:
        return str(self._make_key(self._entry + key, version))

    def tag(self, tag: str) -> str:
        """The base every key of ``tag`` starts with; the braces pin them to one cluster slot."""
        base = self._tags.get(tag)
        if base is None:
            if len(self._tags) >= 10_000:
                self._tags.clear()
            base = self._tags[tag] = str(self._make_key(self._tag + "{" + tag + "}", None))
        return base

    def index(self, tag: str) -> str:
        return self.tag(tag) + ":i"

    def generation(self, tag: str) -> str:
        return self.tag(tag) + ":g"


# Standalone scripts take one base key per tag and derive the tag's other keys (see the .lua files).


def plan_write(
    scheme: KeyScheme,
    options: StoreOptions,
    entry: str,
    payload: bytes,
    ttl_ms: int,
    tags: Sequence[str],
    expected: Sequence[str] | None,
) -> tuple[list[str], list[Any]]:
    """Keys and arguments of write.lua. ``ttl_ms`` 0 means no expiry."""
    keys = [entry, *(scheme.tag(tag) for tag in tags)]
    args: list[Any] = [
        payload,
        ttl_ms,
        0 if expected is None else 1,
        options.prune_per_write,
        options.index_slack_ms,
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


def plan_invalidate(
    scheme: KeyScheme, options: StoreOptions, tags: Sequence[str]
) -> tuple[list[str], list[Any]]:
    keys = [scheme.tag(tag) for tag in tags]
    return keys, [options.chunk_size, options.generation_ttl_ms, *new_tokens(len(tags))]


def parse_invalidate(reply: Sequence[Any]) -> tuple[int, list[tuple[str, str]]]:
    """(entries removed, [(renamed index, pending set), ...] still to drain)."""
    removed = int(reply[0])
    rest = [item.decode() if isinstance(item, bytes) else str(item) for item in reply[1:]]
    pending = sorted(set(zip(rest[0::2], rest[1::2], strict=True)))
    return removed, pending


class TagStore:
    """Synchronous Redis I/O for tagged entries. Every call retries connection errors under the policy."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        make_key: MakeKey,
        options: StoreOptions,
        scripts: ScriptRunner | None = None,
    ) -> None:
        self.client = client
        self.options = options
        self.keys = KeyScheme(make_key, options.key_prefix)
        self.scripts = scripts or ScriptRunner(client)

    def _call(self, func: Callable[[], T]) -> T:
        if self.options.retry is None:
            return func()
        return call_with_retry(self.options.retry, func)

    def get(self, entry: str) -> bytes | None:
        """The raw payload of an entry, or None: one GET."""
        return self._call(lambda: self.client.get(entry))  # type: ignore[return-value]

    def write(
        self,
        entry: str,
        payload: bytes,
        ttl_ms: int,
        tags: Sequence[str],
        expected: Sequence[str] | None = None,
    ) -> bool:
        """Store an entry and its tag memberships atomically; False if a generation moved.

        Without tags and without a generation check this is a plain SET.
        """
        if not tags:
            if ttl_ms:
                return bool(self._call(lambda: self.client.set(entry, payload, px=ttl_ms)))
            return bool(self._call(lambda: self.client.set(entry, payload)))
        keys, args = plan_write(self.keys, self.options, entry, payload, ttl_ms, tags, expected)
        return bool(self._call(lambda: self.scripts("write", keys, args)))

    def generations(self, tags: Sequence[str]) -> list[str]:
        """The current generation token of each tag, created where missing: one script call."""
        if not tags:
            return []
        keys, args = plan_generations(self.keys, self.options, tags)
        reply = self._call(lambda: self.scripts("generations", keys, args))
        return [token.decode() if isinstance(token, bytes) else str(token) for token in reply]

    def delete(self, entry: str) -> bool:
        return bool(self._call(lambda: self.client.delete(entry)))

    def invalidate(self, tags: Sequence[str]) -> int:
        """Delete every entry indexed under ``tags`` and move their generations; returns entries removed.

        Small tags take one script call in all. An index too big for one call is renamed aside
        in that same call (so new writes start a fresh index and the generations have moved),
        then drained in chunks of ``chunk_size`` entries, each chunk one short script call.
        """
        if not tags:
            return 0
        keys, args = plan_invalidate(self.keys, self.options, tags)
        removed, pending = parse_invalidate(self._call(lambda: self.scripts("invalidate", keys, args)))
        for aside, pending_set in pending:
            removed += self.drain(aside, pending_set)
        return removed

    def drain(self, aside: str, pending_set: str) -> int:
        """Delete the entries of an index renamed aside, chunk by chunk, until none is left."""
        removed = 0
        while True:
            reply = self._call(lambda: self.scripts("drain", [aside, pending_set], [self.options.chunk_size]))
            removed += int(reply[0])
            if int(reply[1]) == 0:
                return removed
