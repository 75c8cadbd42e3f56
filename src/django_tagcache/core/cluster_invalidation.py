"""Invalidation on Redis Cluster: the half of :class:`~.cluster_store.ClusterTagStore` that removes entries.

One script call per tag slot sets the tags' indexes aside and moves their generations (new
writes start fresh indexes); then the members are removed chunk by chunk: entries grouped by
slot and replaced by tombstones, then acknowledged in the set-aside index. Interrupted, the next
invalidation of a tag finishes its work. docs/cluster.md gives the protocol and the argument.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from .events import event_args
from .protocol import new_tokens, text
from .steps import TagSteps


@dataclass
class Drain:
    """An index set aside by an invalidation, and the members to remove next (None: not read yet)."""

    aside: str
    drains: str
    replaced: str
    members: list[bytes] | None


class ClusterInvalidation(TagSteps):
    """Invalidation for :class:`~.cluster_store.ClusterSteps`, which adds reads and writes.

    ``runner`` is a cluster script runner of the store's transport: its faces (``run``, ...)
    block or return awaitables, and every call goes through ``self._io``.
    """

    runner: Any

    def _by_slot(self, tags: Sequence[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = defaultdict(list)
        for tag in tags:
            groups[self.runner.slot(self.keys.tag(tag))].append(tag)
        return groups

    async def _invalidate(self, tags: Sequence[str], origin: str | None = None) -> int:
        """Move the tags' generations, then delete every entry their indexes list; returns entries removed.

        One script call per tag slot sets the indexes aside (new writes start fresh ones), then
        the members are removed in chunks: entries grouped by slot and replaced by tombstones,
        then acknowledged in the set-aside index. Interrupted, the next invalidation of a tag
        finishes its work.

        With events on and an ``origin``, the events announcing it (one per
        :attr:`TAGS_PER_CALL` tags, as on one server) are appended once every tag is done: the
        stream lives in one slot, so they cannot share a script with the tags. An event therefore
        never announces an invalidation that did not complete, but a process that dies between
        the two loses the event (the outbox, which clears its row only after this returns, then
        replays both).
        """
        if not tags:
            return 0
        removed = await self._finish(await self._begin_invalidate(tags))
        events = self.events
        if events is not None and origin is not None:
            namespace, step = self.keys.namespace(), self.TAGS_PER_CALL
            calls = []
            for first in range(0, len(tags), step):
                args = event_args(events, namespace, origin, tags[first : first + step])
                calls.append(("cluster_event", args[:2], args[2:]))
            await self._io(lambda: self.runner.run(calls))
        return removed

    async def _mark(self, tags: Sequence[str], mark: str, *, raised: bool) -> None:
        """:meth:`~.steps.TagSteps._mark`: one script call per tag slot, pipelined to the primaries."""
        if not tags:
            return
        ttl = self.options.drain_guard_ttl_ms if raised else 0
        calls = [
            ("marks", [self.keys.tag(tag) + ":w" for tag in group], [mark, ttl])
            for group in self._by_slot(tags).values()
        ]
        await self._io(lambda: self.runner.run(calls))

    async def _begin_invalidate(self, tags: Sequence[str]) -> list[Drain]:
        """Only the first step of :meth:`invalidate`: what is left to :meth:`finish`."""
        calls = []
        for group in self._by_slot(tags).values():
            keys: list[str] = []
            tokens = new_tokens(len(group))
            for tag, token in zip(group, tokens, strict=True):
                base = self.keys.tag(tag)
                keys += (
                    base + ":i",
                    base + ":g",
                    base + ":d",
                    base + ":i:" + token,
                    base + ":c",
                    base + ":w",
                )
            args = [self.options.generation_ttl_ms, self.options.chunk_size, *tokens]
            calls.append(("cluster_invalidate", keys, [*args, self.options.drain_guard_ttl_ms]))
        replies = await self._io(lambda: self.runner.run(calls))
        drains: dict[str, Drain] = {}
        for reply in replies:
            for aside, drains_key, replaced, members in reply:
                name = text(aside)
                if name not in drains or members is not None:
                    drains[name] = Drain(name, text(drains_key), text(replaced), members)
        return list(drains.values())

    async def _drain(self, aside: str, pending_set: str, stale_ms: int = 0) -> int:
        """Delete the entries of one index set aside (``pending_set`` is its tag's drains hash).

        ``stale_ms`` is ignored: soft purges (serving stale within a budget) need a single server.
        """
        slot = self.runner.slot(pending_set)
        replaced = await self._io(lambda: self.runner.execute(slot, "HGET", pending_set, aside))
        return await self._finish(
            [Drain(aside, pending_set, "*" if replaced is None else text(replaced), None)]
        )

    async def _finish(self, drains: Sequence[Drain]) -> int:
        """Tombstone and acknowledge the members of ``drains`` chunk by chunk; returns entries removed."""
        removed = 0
        chunk = self.options.chunk_size
        active = list(drains)
        while active:
            unread = [d for d in active if d.members is None]
            if unread:
                await self._acknowledge(unread)
            active = [d for d in active if d.members]
            # One tombstone per entry, naming every generation this call replaced among its tags:
            # an entry under many of the tags is one removal, not one per tag.
            groups: dict[int, dict[str, dict[str, None]]] = defaultdict(dict)
            for d in active:
                for member in d.members or ():
                    key = text(member)
                    groups[self.runner.slot(key)].setdefault(key, {})[d.replaced] = None
            calls = []
            for replaced_by_key in groups.values():
                items = list(replaced_by_key.items())
                for i in range(0, len(items), chunk):
                    part = items[i : i + chunk]
                    args = [self.options.tombstone_ttl_ms, *(",".join(tokens) for _key, tokens in part)]
                    calls.append(("cluster_tombstone", [key for key, _tokens in part], args))
            if calls:
                removed += sum([int(n) for n in await self._io(partial(self.runner.run, calls))])
            await self._acknowledge(active)
            active = [d for d in active if d.members]
        return removed

    async def _acknowledge(self, drains: Sequence[Drain]) -> None:
        """Remove each drain's members from its set-aside index and read the next ones."""
        if not drains:
            return
        calls = []
        for d in drains:
            base = d.drains[: -len(":d")]
            keys = [d.aside, d.drains, base + ":w", base + ":c"]
            args = [self.options.chunk_size, self.options.generation_ttl_ms, *(d.members or ())]
            calls.append(("cluster_drain", keys, args))
        for d, members in zip(drains, await self._io(lambda: self.runner.run(calls)), strict=True):
            d.members = list(members)
