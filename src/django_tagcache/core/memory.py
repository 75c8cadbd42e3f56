"""The in-process store: the promises of :class:`~django_tagcache.core.store.TagStore`, kept in memory.

It backs a cache alias that uses Django's ``LocMemCache``, so that a project's tests and local
development need no Redis server. Keys are built by the same :class:`~django_tagcache.core.keys.KeyScheme`
as on Redis (backend prefix, version, namespace), and every call has the meaning of its Lua script
(see the ``lua/`` files): entries with TTLs, an index per tag, a random generation token per tag
moved by every invalidation, the write refused when a generation moved since the miss, the
recompute lock, and soft purges within a tag's staleness budget. Each call holds the alias' lock
for its whole duration, which is what makes it atomic, as one script is on Redis.

What it cannot give: sharing between processes (each worker has its own data, so one process's
invalidation is invisible to another), and the operations that read Redis itself (``tagcache_inspect``,
``tagcache_prune``, ``tagcache_scripts``). No Django in here.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn

from . import completions
from .aio_store import AsyncTagStore
from .keys import KeyScheme, MakeKey
from .memory_state import NEVER, MemoryState
from .protections import on
from .protocol import Miss, StoreOptions, new_token, new_tokens, write_checks
from .steps import TagSteps
from .store import TagStore

if TYPE_CHECKING:
    import redis

    from .scripts import ScriptRunner


class NeedsRedis(RuntimeError):
    """An operation that reads Redis itself was asked of the in-process store."""


# One state per alias and process, so that rebuilding a store (settings changed) keeps its data,
# as a Redis server would. reset() empties it, like FLUSHDB.
_states: dict[str, MemoryState] = {}
_states_lock = threading.Lock()


def state_for(alias: str) -> MemoryState:
    with _states_lock:
        state = _states.get(alias)
        if state is None:
            state = _states[alias] = MemoryState()
        return state


def reset(alias: str | None = None) -> None:
    """Empty the in-process store of ``alias`` (every alias if None): the FLUSHDB of the in-process store."""
    with _states_lock:
        for name, state in _states.items():
            if alias is None or name == alias:
                state.clear()


def _glob(pattern: str) -> re.Pattern[str]:
    """A Redis ``MATCH`` pattern made of literals, ``\\``-escapes, ``*`` and ``?``, as a regex."""
    parts = re.findall(r"\\.|\*|\?|[^\\*?]+", pattern)
    table = {"*": ".*", "?": "."}
    return re.compile("".join(table.get(p) or re.escape(p[-1] if p[0] == "\\" else p) for p in parts))


class MemorySteps(TagSteps):
    """The steps of :class:`TagStore` in this process's memory (see the module docstring).

    They do no I/O: :class:`MemoryStore` and :class:`AsyncMemoryStore` run them alike.
    """

    standalone = True

    def __init__(
        self,
        state: MemoryState,
        *,
        make_key: MakeKey,
        options: StoreOptions,
        namespace: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # No Redis client, scripts or circuit breaker: nothing here can fail to connect.
        self.state = state
        self.options = options
        self.keys = KeyScheme(make_key, options.key_prefix, namespace)
        self.breaker = None
        self.staleness = None
        self.events = None  # no stream to announce to (see invalidate)
        self._clock = clock

    @property
    def client(self) -> redis.Redis:
        self._needs_redis("a raw Redis client")

    @property
    def scripts(self) -> ScriptRunner:
        self._needs_redis("Lua scripts")

    def _needs_redis(self, what: str) -> NoReturn:
        raise NeedsRedis(f"{what}: this cache alias uses the in-process store (LocMemCache), not Redis")

    def _now(self) -> float:
        return self._clock() * 1000

    def _expiry(self, ttl_ms: int) -> float:
        return self._now() + ttl_ms if ttl_ms else NEVER

    def _read(self, entry: str) -> bytes | None:
        with self.state.lock:
            return self.state.read(entry, self._now())

    async def _write(
        self,
        entry: str,
        payload: bytes,
        ttl_ms: int,
        tags: Sequence[str],
        expected: Sequence[str] | None = None,
        owner: str = "",
        fence_us: int = 0,
    ) -> bool:
        state, now = self.state, self._now()
        check, guard, cutoff = write_checks(self.options, expected, fence_us)
        with state.lock:
            if owner and state.read(entry + ":lock", now) == owner.encode():
                state.delete(entry + ":lock")
            if expected is not None and check and not self._unchanged(tags, expected, now):
                return False
            if guard and state.marks and any(state.marked(self.keys.tag(tag), now) for tag in tags):
                return False
            if cutoff and not self._before_fence(tags, cutoff, now):
                return False
            state.delete(entry + ":stale")  # a fresh value replaces any copy a soft purge kept
            expiry = self._expiry(ttl_ms)
            state.put(entry, payload, expiry)
            for tag in tags:
                state.index(self.keys.tag(tag), entry, expiry)
            state.after_write(now)
        return True

    def _unchanged(self, tags: Sequence[str], expected: Sequence[str], now: float) -> bool:
        """The rule of write.lua: every generation still equals the token read at the miss.

        A missing generation never matches: tokens are created at the miss, so one that
        disappeared (expired) means the reader cannot prove its data is fresh.
        """
        for tag, token in zip(tags, expected, strict=True):
            if self.state.read(self.keys.generation(tag), now) != token.encode():
                return False
        return True

    def _before_fence(self, tags: Sequence[str], cutoff: int, now: float) -> bool:
        """The read fence of write.lua: no tag's last invalidation completed at or after ``cutoff`` (µs)."""
        if cutoff < 0:
            return False
        for tag in tags:
            generation = self.state.read(self.keys.generation(tag), now)
            done = generation.partition(b"@")[2] if generation is not None else b""
            if done and int(done) >= cutoff:
                return False
        return True

    def _tokens_at(self, tags: Sequence[str], now: float) -> list[str]:
        """Each tag's generation token, created where missing (generations.lua)."""
        ttl = self.options.generation_ttl_ms
        tokens = []
        for tag, fresh in zip(tags, new_tokens(len(tags)), strict=True):
            key = self.keys.generation(tag)
            token = self.state.read(key, now)
            if token is None:
                token = fresh.encode()
                self.state.put(key, token, now + ttl)
            tokens.append(token.decode())
        return tokens

    async def _prepare_miss(self, entry: str, tags: Sequence[str], *, lock_ttl_ms: int = 0) -> Miss:
        owner = new_token() if lock_ttl_ms else ""
        state, now = self.state, self._now()
        with state.lock:
            tokens = self._tokens_at(tags, now)
            if state.marks and on("drain_guard"):  # as miss.lua: no write can match '' (see _mark)
                tokens = [
                    "" if state.marked(self.keys.tag(tag), now) else t
                    for tag, t in zip(tags, tokens, strict=True)
                ]
            locked = bool(owner) and state.put_new(entry + ":lock", owner.encode(), now + lock_ttl_ms, now)
            payload, stale = state.read(entry, now), state.read(entry + ":stale", now)
        return Miss(tokens=tokens, payload=payload, owner=owner if locked else "", stale=stale)

    async def _lock(self, entry: str, owner: str, lock_ttl_ms: int) -> bool:
        now = self._now()
        with self.state.lock:
            return self.state.put_new(entry + ":lock", owner.encode(), now + lock_ttl_ms, now)

    async def _unlock(self, entry: str, owner: str) -> None:
        with self.state.lock:
            if self.state.read(entry + ":lock", self._now()) == owner.encode():
                self.state.delete(entry + ":lock")

    async def _generations(self, tags: Sequence[str]) -> list[str]:
        with self.state.lock:
            return self._tokens_at(tags, self._now())

    async def _vouching_generations(self, tags: Sequence[str]) -> list[str | None]:
        # Nothing ever drains here (invalidate() is one step); a tag is in progress only while an
        # invalidation spanning several cache aliases holds its mark (see _mark).
        state, now = self.state, self._now()
        with state.lock:
            tokens = self._tokens_at(tags, now)
            if not state.marks or not on("drain_guard"):
                return list(tokens)
            return [
                None if state.marked(self.keys.tag(tag), now) else token
                for tag, token in zip(tags, tokens, strict=True)
            ]

    async def _mark(self, tags: Sequence[str], mark: str, *, raised: bool) -> None:
        state, now = self.state, self._now()
        with state.lock:
            for tag in tags:
                base = self.keys.tag(tag)
                if raised:
                    state.marks.setdefault(base, {})[mark] = now + self.options.drain_guard_ttl_ms
                elif mark in state.marks.get(base, {}):
                    del state.marks[base][mark]
                    if not state.marks[base]:
                        del state.marks[base]

    async def _delete(self, entry: str) -> bool:
        with self.state.lock:
            return self.state.read(entry, self._now()) is not None and self.state.delete(entry)

    async def _invalidate(self, tags: Sequence[str], origin: str | None = None) -> int:
        """Move each tag's generation and delete (or, within its staleness budget, soften) its entries.

        Events (``origin``) are not announced: the in-process store has no stream to append to.
        """
        state, now = self.state, self._now()
        ttl = self.options.generation_ttl_ms
        removed = 0
        done: list[object] = []
        with state.lock:
            # One moment for the call, as a script's TIME: its tags complete together.
            started = int(time.time() * 1_000_000)
            for tag, token in zip(tags, new_tokens(len(tags)), strict=True):
                budget = self.staleness(tag) if self.staleness is not None else 0
                base = self.keys.tag(tag)
                for member in state.take_index(base):
                    removed += state.purge(member, budget, now)
                # Complete now, on the wall clock (µs, as Redis TIME): fences are read on it too.
                # The generation records it, as invalidate.lua's does: '<token>@<completion>'.
                # Completion times only grow, as in invalidate.lua.
                replaced = state.read(base + ":g", now)
                previous = replaced.partition(b"@")[2] if replaced is not None else b""
                stamp = started
                if previous and int(previous) >= stamp:
                    stamp = int(previous) + 1
                state.put(base + ":g", f"{token}@{stamp}".encode(), now + ttl)
                done += [stamp, previous]
        completions.record(tags, done)
        return removed

    async def _drain(self, aside: str, pending_set: str, stale_ms: int = 0) -> int:
        return 0  # invalidate() never leaves an index aside: it holds the lock for as long as it needs

    def pttl(self, key: str) -> int:
        """What Redis' PTTL would answer for ``key``: ms to live, -1 if it never expires, -2 if missing."""
        now = self._now()
        with self.state.lock:
            if self.state.read(key, now) is None:
                return -2
            expiry = self.state.values[key][1]
        return -1 if expiry == NEVER else int(expiry - now)

    def members(self, tag: str) -> list[str]:
        """The entry keys indexed under ``tag`` (live or not yet swept), as its index would list them."""
        with self.state.lock:
            return sorted(self.state.indexes.get(self.keys.tag(tag), {}))

    def scan_keys(self, match: str) -> Iterator[str]:
        """Index keys (``<tag base>:i``) and string keys (generations, ...) matching a ``MATCH`` pattern."""
        pattern = _glob(match)
        with self.state.lock:
            names = [base + ":i" for base in self.state.indexes] + list(self.state.values)
        return (name for name in names if pattern.fullmatch(name))

    def scan_indexes(self, match: str) -> Iterator[str]:
        """The index keys (``<tag base>:i``) that match a Redis ``MATCH`` pattern, like SCAN would list."""
        pattern = _glob(match)
        with self.state.lock:
            names = [base + ":i" for base in self.state.indexes]
        return (name for name in names if pattern.fullmatch(name))


class MemoryStore(MemorySteps, TagStore):  # type: ignore[override]
    """:class:`TagStore` in this process's memory."""

    def get(self, entry: str) -> bytes | None:
        return self._read(entry)


class AsyncMemoryStore(MemorySteps, AsyncTagStore):
    """:class:`~.aio_store.AsyncTagStore` in this process's memory: the same steps, nothing awaited."""

    async def get(self, entry: str) -> bytes | None:
        return self._read(entry)

    async def get_many(self, entries: Sequence[str]) -> list[bytes | None]:
        return [self._read(entry) for entry in entries]
