"""The Redis Cluster strategy of the store: the same calls as :class:`TagStore`, one slot per script.

An entry's key carries no hash tag, so entries spread over the whole cluster, while every key
of one tag shares the slot of ``{tag}``. No script may touch two slots, so a write and an
invalidation each become a few steps, ordered so that an interruption anywhere leaves a
state that is safe to read and that a retry (or the next invalidation of the tag) completes.
docs/cluster.md gives the protocol and the argument; the Lua files say what each step does.

Every command goes to the primary that serves its slot, named explicitly: redis-py would
otherwise ask a node ``COMMAND GETKEYS`` before every FCALL or pipelined EVALSHA, and could
send reads to a replica that has not seen an invalidation yet. Commands for several slots
are pipelined: one write per node, all nodes at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import (
    ClusterDownError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from .bridge import blocking
from .cluster_invalidation import ClusterInvalidation
from .cluster_scripts import ClusterScriptRunner
from .guarded import unreachable
from .protections import on
from .protocol import text, write_checks
from .store import MakeKey, Miss, StoreOptions, TagStore, new_token, new_tokens

if TYPE_CHECKING:
    from .scripts import Mode


#: What a tombstone value starts with; ``cluster_*.lua`` spell it out too (a test compares them).
TOMBSTONE = b"\x00tagcache:tombstone"

# Errors a failover or a resharding in progress causes, that the same call cures later.
_TRANSIENT = (ClusterDownError, TryAgainError)


class ClusterTransientError(RedisConnectionError):
    """The cluster could not serve a call right now (failover, resharding): retried like a lost connection."""


@dataclass(frozen=True)
class Indexed:
    """What step 1 of a cluster write learned: the generation of each tag, and when the entry expires."""

    seen: dict[str, str]
    expire_at: int  # ms since the epoch; 0: never


def _translate(exc: BaseException) -> Exception | None:
    """An error a failover or resharding causes, or no node serving, as the connection error it is.

    Any other ``RedisClusterException`` is a bug (several slots in one script) and surfaces.
    """
    if isinstance(exc, _TRANSIENT) or (isinstance(exc, RedisClusterException) and unreachable(exc)):
        return ClusterTransientError(f"{type(exc).__name__}: {exc}")
    return None


def live(raw: Any) -> bytes | None:
    """An entry's payload as read: a tombstone reads as None."""
    if raw is None or raw.startswith(TOMBSTONE):
        return None
    return cast("bytes", raw)


class ClusterSteps(ClusterInvalidation):
    """The steps of :class:`TagStore` for Redis Cluster: the same promises, kept with single-slot scripts.

    Reads and writes are here; invalidation comes from its base class (cluster_invalidation.py).
    :class:`ClusterTagStore` runs them on a blocking client, the asyncio store on ``redis.asyncio``.
    """

    _translate = staticmethod(_translate)

    def __init__(
        self,
        client: Any,
        *,
        make_key: MakeKey,
        options: StoreOptions,
        mode: Mode = "auto",
        namespace: Callable[[], str | None] | None = None,
    ) -> None:
        runner = self._cluster_runner(client, mode)
        super().__init__(client, make_key=make_key, options=options, scripts=runner, namespace=namespace)
        self.runner = runner

    def _cluster_runner(self, client: Any, mode: Mode) -> Any:
        raise NotImplementedError

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
        """Index the entry in each tag's slot, store it, then check that no generation moved meanwhile.

        False if refused: a generation differed from ``expected``, an invalidation removed the
        entry before it was stored, or one moved a generation after (then the entry is deleted
        again). ``owner`` releases the recompute lock of :meth:`prepare_miss`, stored or not.
        Without tags this is a plain SET. The steps are :meth:`write_index`,
        :meth:`write_entry` and :meth:`write_confirm`.
        """
        if not tags:
            if not owner:
                return await super()._write(entry, payload, ttl_ms, tags, expected)
            untagged = Indexed({}, 0)  # the entry's own TTL below, not an index member's expiry
            return await self._write_entry(entry, payload, untagged, owner=owner, ttl_ms=ttl_ms)
        indexed = await self._write_index(entry, ttl_ms, tags, expected, fence_us)
        if indexed is None:
            if owner:
                await self._unlock(entry, owner)
            return False
        return await self._write_entry(entry, payload, indexed, owner=owner) and await self._write_confirm(
            entry, indexed
        )

    async def _write_index(
        self,
        entry: str,
        ttl_ms: int,
        tags: Sequence[str],
        expected: Sequence[str] | None = None,
        fence_us: int = 0,
    ) -> Indexed | None:
        """Step 1: add the entry to each tag's index, one script call per slot; None if refused.

        Checks the generations against ``expected`` if given (and then the drains in progress
        and the read fence ``fence_us``), else creates missing ones.
        """
        tokens = dict(zip(tags, expected if expected is not None else new_tokens(len(tags)), strict=True))
        check, guard, cutoff = write_checks(self.options, expected, fence_us)
        groups = self._by_slot(tags)
        calls = []
        for group in groups.values():
            keys = [self.tag_key(tag, suffix) for tag in group for suffix in (":i", ":g", ":c", ":w")]
            args = [
                entry,
                ttl_ms,
                check,
                self.options.prune_per_write,
                self.options.index_slack_ms,
                self.options.generation_ttl_ms,
                guard,
                cutoff,
                *(tokens[tag] for tag in group),
            ]
            calls.append(("cluster_index", keys, args))
        replies = await self._io(lambda: self.runner.run(calls))
        if any(int(reply[0]) == 0 for reply in replies):
            return None
        seen: dict[str, str] = {}
        for group, reply in zip(groups.values(), replies, strict=True):
            seen.update(zip(group, map(text, reply[2:]), strict=True))
        # The entry expires when its earliest index member does: pruning never drops the member
        # of an entry that is still alive.
        expire_at = 0 if ttl_ms == 0 else int(min(float(text(reply[1])) for reply in replies))
        return Indexed(seen, expire_at)

    async def _write_entry(
        self, entry: str, payload: bytes, indexed: Indexed, *, owner: str = "", ttl_ms: int = 0
    ) -> bool:
        """Step 2: store the entry, unless a tombstone shows an invalidation removed it after step 1.

        With ``owner``, the recompute lock is released in the same round trip. ``ttl_ms`` is for
        an entry without tags (``indexed.expire_at`` otherwise says when it expires).
        """
        expire_at = indexed.expire_at
        if ttl_ms:
            expire_at = -ttl_ms  # cluster_set.lua: a negative value is a relative TTL
        commands = [
            self.runner.script(
                "cluster_set", [entry], [payload, expire_at, *sorted(set(indexed.seen.values()))]
            )
        ]
        if owner:
            commands.append(self.runner.script("cluster_unlock", [self.lock_key(entry)], [owner]))
        return bool(int((await self._io(lambda: self.runner.run_commands(commands)))[0]))

    async def _write_confirm(self, entry: str, indexed: Indexed) -> bool:
        """Step 3: reread the generations; if one moved since step 1, delete the entry again.

        This catches an invalidation whose tombstone step 2 could not see (it expired, or a
        concurrent writer of the same key replaced it).
        """
        keys = [self.keys.generation(tag) for tag in indexed.seen]
        gets = [(self.runner.slot(k), ("GET", k)) for k in keys]
        now = await self._io(lambda: self.runner.run_commands(gets))
        if [None if token is None else text(token) for token in now] == list(indexed.seen.values()):
            return True
        await self._io(lambda: self.client.delete(entry))
        return False

    def tag_key(self, tag: str, suffix: str) -> str:
        return self.keys.tag(tag) + suffix

    @staticmethod
    def lock_key(entry: str) -> str:
        """The recompute lock of an entry (the standalone scripts derive the same name)."""
        return entry + ":lock"

    async def _prepare_miss(self, entry: str, tags: Sequence[str], *, lock_ttl_ms: int = 0) -> Miss:
        """After a miss, in one round of messages sent at once: the tags' generations (created
        where missing), the recompute lock if ``lock_ttl_ms``, and the entry if it appeared."""
        owner = new_token() if lock_ttl_ms else ""
        groups = self._by_slot(tags)
        commands = [
            self.runner.script(
                "generations",
                # A tag still draining gets no token: see miss.lua.
                [self.keys.generation(tag) for tag in group]
                + ([self.tag_key(tag, ":w") for tag in group] if on("drain_guard") else []),
                [*new_tokens(len(group)), self.options.generation_ttl_ms],
            )
            for group in groups.values()
        ]
        commands.append((self.runner.slot(entry), ["GET", entry]))
        if owner:
            lock = self.lock_key(entry)
            commands.append((self.runner.slot(lock), ["SET", lock, owner, "NX", "PX", lock_ttl_ms]))
        replies = await self._io(lambda: self.runner.run_commands(commands))
        found: dict[str, str] = {}
        for group, reply in zip(groups.values(), replies[: len(groups)], strict=True):
            # '' is a token no write accepts.
            found.update(zip(group, ("" if t is None else text(t) for t in reply), strict=True))
        payload = replies[len(groups)]
        if payload is not None and payload.startswith(TOMBSTONE):
            payload = None
        locked = bool(owner) and bool(replies[-1])
        return Miss(tokens=[found[tag] for tag in tags], payload=payload, owner=owner if locked else "")

    async def _finish_miss(
        self,
        entry: str,
        payload: bytes,
        ttl_ms: int,
        tags: Sequence[str],
        expected: Sequence[str] | None,
        owner: str,
        fence_us: int = 0,
    ) -> bool:
        """Write a recomputed entry (checked against ``expected`` and the read fence ``fence_us``)
        and release the lock ``owner`` holds.

        The lock goes with the store (step 2), or at once if step 1 refuses.
        """
        try:
            return await self._write(entry, payload, ttl_ms, tags, expected, owner, fence_us)
        except BaseException:
            if owner:
                with contextlib.suppress(RedisConnectionError):
                    await self._unlock(entry, owner)  # else it expires on its own
            raise

    async def _unlock(self, entry: str, owner: str) -> None:
        """Release a recompute lock this caller holds (after a failed compute)."""
        await self._io(lambda: self.runner("cluster_unlock", [self.lock_key(entry)], [owner]))

    async def _tokens(self, tags: Sequence[str], *, draining: bool) -> list[str | None]:
        """The generation of each tag, one script call per slot (None: draining, see miss.lua)."""
        if not tags:
            return []
        groups = self._by_slot(tags)
        calls = [
            (
                "generations",
                [self.keys.generation(tag) for tag in group]
                + ([self.tag_key(tag, ":w") for tag in group] if draining and on("drain_guard") else []),
                [*new_tokens(len(group)), self.options.generation_ttl_ms],
            )
            for group in groups.values()
        ]
        replies = await self._io(lambda: self.runner.run(calls))
        found: dict[str, str | None] = {}
        for group, reply in zip(groups.values(), replies, strict=True):
            found.update(zip(group, (None if t is None else text(t) for t in reply), strict=True))
        return [found[tag] for tag in tags]


class ClusterTagStore(ClusterSteps, TagStore):
    """:class:`ClusterSteps` on a blocking ``RedisCluster``."""

    runner: ClusterScriptRunner

    def _cluster_runner(self, client: Any, mode: Mode) -> ClusterScriptRunner:
        return ClusterScriptRunner(client, mode)

    def get(self, entry: str) -> bytes | None:
        """The raw payload of an entry, or None: one GET, on the primary (a tombstone reads as None)."""
        return live(self._call(lambda: self.runner.execute(self.runner.slot(entry), "GET", entry)))

    def get_with_ttl(self, entry: str) -> tuple[bytes | None, int]:
        """:meth:`get` and the entry's PTTL, in one round trip to its primary."""
        payload, ttl = super().get_with_ttl(entry)
        if payload is not None and payload.startswith(TOMBSTONE):
            return None, -2
        return payload, ttl

    write_index = blocking(ClusterSteps._write_index)
    write_entry = blocking(ClusterSteps._write_entry)
    write_confirm = blocking(ClusterSteps._write_confirm)
    begin_invalidate = blocking(ClusterSteps._begin_invalidate)
    finish = blocking(ClusterSteps._finish)
