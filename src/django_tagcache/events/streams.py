"""The source side of consuming: one stream of another service, read through a consumer group.

Besides the stream, the consumer keeps two hashes on the source's Redis, in the stream's Cluster
slot: ``{<stream>}:consumed:<group>`` (events applied, duplicates, dead-lettered, trimmed, and the
newest applied event's time) and ``{<stream>}:attempts:<group>`` (failed tries per entry, and the
last reason). The dead-letter stream (``DEAD_LETTER``) gets the original fields of each entry it
receives, plus ``dead_reason``, ``dead_id``, ``dead_group``, ``dead_consumer`` and ``dead_attempts``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import NoScriptError, ResponseError

from ..core.protocol import encoded, text
from ..core.scripts import source as script_source

if TYPE_CHECKING:
    from ..conf import EventSource, EventsSettings
    from .apply import Outcome

Entry = tuple[str, dict[Any, Any]]
logger = logging.getLogger("django_tagcache.events")
#: How Redis says that a stream or its consumer group is gone: NOGROUP for a command naming the
#: group, UNBLOCKED for an XREADGROUP blocked when the stream was deleted, and XINFO's reply.
_GONE = ("NOGROUP", "UNBLOCKED", "no such key")


def connect(source: EventSource, settings: EventsSettings) -> redis.Redis:
    """A client for the source's Redis; its socket timeout outlasts a blocking read."""
    timeout = settings.block + 5.0
    if source.cluster:
        from redis.cluster import RedisCluster

        cluster: Any = RedisCluster.from_url(source.url, socket_timeout=timeout, socket_connect_timeout=5.0)
        return cluster  # type: ignore[no-any-return]
    return redis.Redis.from_url(source.url, socket_timeout=timeout, socket_connect_timeout=5.0)


class SourceStream:
    """The Redis commands of consuming one source stream (no decisions: the consumer makes them)."""

    def __init__(
        self, source: EventSource, settings: EventsSettings, client: redis.Redis | None = None
    ) -> None:
        self.source = source
        self.settings = settings
        self.group = settings.group
        self.client = client or connect(source, settings)
        self.consumed = "{" + source.stream + "}:consumed:" + self.group
        self.attempts = "{" + source.stream + "}:attempts:" + self.group
        self._has_group = False
        self._lost_group = False  # the group was there and is gone: say so when recreating it
        self._claim_from = "0-0"
        self._remove_consumer: Any = None  # lua/event_consumers.lua, registered on first use
        self._read_script: Any = None  # lua/event_read.lua, registered on first use
        self._backlog = False  # the last read of new entries filled its batch: more are waiting
        self._unacked: tuple[list[str], Outcome] | None = None  # sent with the next read

    def ensure_group(self) -> None:
        """Create the consumer group, from the stream's start (``0``), if it does not exist.

        From the start rather than from ``$``, also when the group or the stream was deleted
        while consuming: a new stream holds only what was appended since its deletion, all of it
        still to apply, and ``$`` would skip those entries; a stream kept whose group was
        destroyed is read again, where the marks find each event already applied (a duplicate).
        """
        if self._has_group:
            return
        try:
            self.client.xgroup_create(self.source.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        else:
            if self._lost_group:
                logger.warning(
                    "django-tagcache: the consumer group %r of stream %r was gone (the stream or "
                    "the group was deleted); recreated it, reading the stream from its start",
                    self.group,
                    self.source.stream,
                )
        self._has_group = True
        self._lost_group = False

    def _group_gone(self, exc: ResponseError) -> bool:
        """Whether ``exc`` says the stream or the group is gone; if so, have it recreated."""
        message = str(exc)
        # A script's error carries the command's own after its prefix (on Redis < 7).
        if not any(gone in message for gone in _GONE):
            return False
        self._has_group = False
        self._lost_group = True
        self._claim_from = "0-0"
        self._backlog = False
        return True

    def read(
        self, consumer: str, count: int, *, own: bool = False, block_ms: int | None = None
    ) -> list[Entry]:
        """New entries (``>``), or with ``own`` this consumer's pending ones from the start.

        While a backlog lasts (the last read of new entries filled its batch), new entries are
        read without blocking by ``lua/event_read.lua``, as one JSON text: their fields then come
        as ``str``, not ``bytes``. Otherwise, and for ``own``, by ``XREADGROUP`` (``BLOCK``).
        """
        self.ensure_group()
        if self._backlog and not own:
            try:
                entries = self._read_text(consumer, count)
            except ResponseError as exc:
                if not self._group_gone(exc):
                    raise
                return []
            self._backlog = len(entries) >= count
            if entries:
                return entries
        try:
            reply: Any = self._with_ack(
                lambda client: client.xreadgroup(
                    self.group,
                    consumer,
                    {self.source.stream: "0" if own else ">"},
                    count=count,
                    block=None if own else block_ms,
                )
            )
        except ResponseError as exc:
            if not self._group_gone(exc):
                raise
            return []
        entries = [(text(entry_id), fields) for _stream, items in reply or () for entry_id, fields in items]
        if not own:
            self._backlog = len(entries) >= count
        trimmed = [entry_id for entry_id, fields in entries if not fields]
        if trimmed:  # pending, but trimmed off the stream before being applied
            self.client.xack(self.source.stream, self.group, *trimmed)
            self.count(trimmed=len(trimmed))
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    def _read_text(self, consumer: str, count: int) -> list[Entry]:
        """New entries through ``lua/event_read.lua``; its JSON text parsed at once (C code)."""
        args = [self.group, consumer, count]
        if self._read_script is None:  # loaded once here; then EVALSHA, also in a pipeline
            self._read_script = self.client.register_script(script_source("event_read"))
            self.client.script_load(self._read_script.script)
        sha = self._read_script.sha
        try:
            raw = self._with_ack(lambda client: client.evalsha(sha, 1, self.source.stream, *args))
        except NoScriptError:  # the source restarted, or SCRIPT FLUSH: load it, read again
            raw = self._read_script(keys=[self.source.stream], args=args, client=self.client)
        if raw is None:
            return []
        try:
            found = json.loads(raw)
        except ValueError:
            # A field that is not UTF-8 (JSON cannot carry it): the entries are this consumer's
            # now; read them again as bytes, where such an entry is refused with its reason.
            reply: Any = self.client.xreadgroup(self.group, consumer, {self.source.stream: "0"}, count=count)
            return [(text(entry_id), fields) for _stream, items in reply or () for entry_id, fields in items]
        return [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True))) for entry_id, flat in found]

    def claim(self, consumer: str, count: int) -> tuple[list[Entry], list[str]]:
        """Take over entries others left pending over ``CLAIM_IDLE``: (entries, trimmed ids)."""
        self.ensure_group()
        idle_ms = int(self.settings.claim_idle * 1000)
        try:
            reply: Any = self.client.xautoclaim(
                self.source.stream, self.group, consumer, idle_ms, start_id=self._claim_from, count=count
            )
        except ResponseError as exc:
            if not self._group_gone(exc):
                raise
            return [], []
        self._claim_from = text(reply[0])
        entries = [(text(entry_id), fields) for entry_id, fields in reply[1] if fields]
        trimmed = [text(entry_id) for entry_id in (reply[2] if len(reply) > 2 else ())]
        return entries, trimmed

    def remove_idle_consumers(self, consumer: str, count: int) -> tuple[int, list[str]]:
        """Remove from the group the consumers idle for over ``DEAD_CONSUMER_IDLE``, each once
        ``consumer`` has claimed its pending entries (a consumer still holding some stays: see
        ``lua/event_consumers.lua``). Returns (entries claimed, consumers removed)."""
        self.ensure_group()
        idle_ms = int(self.settings.dead_consumer_idle * 1000)
        claimed, removed = 0, []
        try:
            infos: Any = self.client.xinfo_consumers(self.source.stream, self.group)
            for info in infos:
                name = info["name"]
                if text(name) == consumer or int(info["idle"]) < idle_ms:
                    continue
                if self._remove_consumer is None:
                    self._remove_consumer = self.client.register_script(script_source("event_consumers"))
                reply = self._remove_consumer(
                    keys=[self.source.stream], args=[self.group, name, consumer, idle_ms, count]
                )
                claimed += int(reply[0])
                if int(reply[1]):
                    removed.append(text(name))
        except ResponseError as exc:
            if not self._group_gone(exc):
                raise
        return claimed, removed

    def acknowledge(self, ids: Sequence[str], outcome: Outcome, *, with_next_read: bool = False) -> None:
        """Acknowledge applied entries and count them, in one round trip (one transaction on one server).

        ``with_next_read`` keeps them for the next :meth:`read`, which sends them first in its own
        round trip (on one server; a cluster acknowledges at once): one round trip fewer a batch.
        Until then they stay pending: a consumer that dies first has them applied again by whoever
        reads them next, never lost. :meth:`flush` sends them without reading.
        """
        self.flush()
        if with_next_read and not self.source.cluster:
            self._unacked = (list(ids), outcome)
            return
        pipe = self.client.pipeline(transaction=not self.source.cluster)
        self._queue_ack(pipe, ids, outcome)
        pipe.execute()

    def flush(self) -> None:
        """Send the acknowledgement kept for the next read now (at the end of a run)."""
        if self._unacked is not None:
            ids, outcome = self._unacked
            self._unacked = None
            self.acknowledge(ids, outcome)

    def _queue_ack(self, pipe: Any, ids: Sequence[str], outcome: Outcome) -> None:
        pipe.xack(self.source.stream, self.group, *encoded(ids))
        pipe.hincrby(self.consumed, "applied", outcome.applied)
        pipe.hincrby(self.consumed, "duplicates", outcome.duplicates)
        if outcome.newest_ts_us:
            pipe.hset(self.consumed, "applied_ts_us", max(outcome.newest_ts_us))

    def _with_ack(self, read: Callable[[Any], Any]) -> Any:
        """``read(client)``'s reply; an acknowledgement kept for it goes first, in the same round trip.

        The kept acknowledgement is dropped before sending: if the round trip fails, its entries
        stay pending and are applied again (counted as duplicates), never acknowledged twice.
        """
        if self._unacked is None:
            return read(self.client)
        ids, outcome = self._unacked
        self._unacked = None
        pipe = self.client.pipeline(transaction=False)  # a blocking read cannot run in MULTI
        self._queue_ack(pipe, ids, outcome)
        read(pipe)
        return pipe.execute()[-1]

    def failed(self, entry_id: str, reason: str) -> int:
        """Count a failed try of ``entry_id``; returns its tries so far."""
        pipe = self.client.pipeline(transaction=not self.source.cluster)
        pipe.hincrby(self.attempts, entry_id, 1)
        pipe.hset(self.attempts, entry_id + ":reason", reason[:1000])
        return int(pipe.execute()[0])

    def fields(self, entry_id: str) -> dict[Any, Any]:
        found: Any = self.client.xrange(self.source.stream, entry_id, entry_id)
        return dict(found[0][1]) if found else {b"missing": b"trimmed from the stream"}

    def dead_letter(
        self, consumer: str, entry_id: str, fields: dict[Any, Any], reason: str, *, attempts: int
    ) -> None:
        """Copy an entry to the dead-letter stream with why, then acknowledge it (in that order)."""
        extra = {
            "dead_reason": reason[:1000],
            "dead_id": entry_id,
            "dead_group": self.group,
            "dead_consumer": consumer,
            "dead_attempts": attempts,
        }
        dead: dict[Any, Any] = {**{text(k): v for k, v in fields.items()}, **extra}
        # One transaction on one server. On a cluster the two streams may live in different slots:
        # the copy comes first, so a crash in between copies twice rather than losing the entry.
        pipe = self.client.pipeline(transaction=not self.source.cluster)
        pipe.xadd(self.source.dead_letter, dead, maxlen=self.settings.maxlen, approximate=True)
        if self.source.cluster:
            pipe.execute()
        pipe.xack(self.source.stream, self.group, entry_id)
        pipe.hdel(self.attempts, entry_id, entry_id + ":reason")
        pipe.hincrby(self.consumed, "dead_lettered", 1)
        pipe.execute()

    def dead_letters(self, first: str = "-", last: str = "+", page: int = 100) -> Iterator[Entry]:
        """The entries of the dead-letter stream with ids from ``first`` to ``last``, in order."""
        start = first
        while True:
            found: Any = self.client.xrange(self.source.dead_letter, start, last, count=page)
            for entry_id, fields in found:
                yield text(entry_id), fields
            if len(found) < page:
                return
            start = "(" + text(found[-1][0])

    def replay(self, dead_id: str, fields: dict[Any, Any]) -> str:
        """Append a dead-lettered event to the stream again, as it first was; then drop it from the
        dead-letter stream. Returns the new entry's id.

        One transaction on one server. On a cluster the two streams may live in different slots:
        the append comes first, so a crash in between replays the event twice (applying an event
        again is harmless), never zero times.
        """
        original = {k: v for k, v in fields.items() if not text(k).startswith("dead_")}
        pipe = self.client.pipeline(transaction=not self.source.cluster)
        pipe.xadd(self.source.stream, original, maxlen=self.settings.maxlen, approximate=True)
        if self.source.cluster:
            new_id = text(pipe.execute()[0])
            self.client.xdel(self.source.dead_letter, dead_id)
            return new_id
        pipe.xdel(self.source.dead_letter, dead_id)
        return text(pipe.execute()[0])

    def count(self, **amounts: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for name, amount in amounts.items():
            pipe.hincrby(self.consumed, name, amount)
        pipe.execute()
