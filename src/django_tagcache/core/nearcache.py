"""The near cache (L1): entry payloads held in the process, in front of Redis. No I/O in here.

This structure is pure and lock-protected, so that sync and async readers share it; what keeps
it fresh (Redis' invalidation push, :mod:`django_tagcache.core.tracking`) calls into it.

Two rules make it safe; both are checked under the one lock:

* **It serves only while the channel is known live.** :meth:`NearCache.confirm` records the
  moment the last heartbeat was *sent* whose reply came back on the tracking connection. Redis
  answers on one connection in order, so every push for a write that finished before that moment
  has been applied by then. A hit is served only while that moment is less than ``max_lag``
  seconds old; any break of the channel (:meth:`NearCache.flush`) empties the cache and moves
  the epoch.
* **A value read before tracking covered it is never kept.** A reader takes a
  :class:`Ticket` *before* it sends its read to Redis, and :meth:`NearCache.put` keeps the value
  only if, since the ticket was taken, no push named the key and the epoch did not move (no
  flush, and tracking was already on when the ticket was taken: :meth:`NearCache.tracking_on`
  moves the epoch too). A push that arrives between the read and the put is the race this closes:
  the write it reports may have come after the read, so the value read may be the old one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import metrics
from .protections import on

#: What one entry costs besides its key and payload (dict slot, list, deadline), counted in the bound.
ENTRY_OVERHEAD = 120


@dataclass(eq=False)
class Ticket:
    """A read in flight: taken before the read is sent, handed back to :meth:`NearCache.put`."""

    key: str
    epoch: int
    started: float  # time.monotonic() when taken: the entry's TTL counts from here
    valid: bool = field(default=True)


class NearCache:
    """An LRU of ``key -> payload`` bounded by ``max_entries`` and ``max_bytes``, with per-entry deadlines."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        max_ttl: float,
        max_lag: float,
        channels: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_ttl = max_ttl
        self.max_lag = max_lag
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # key -> (payload, deadline)
        self._bytes = 0
        self._epoch = 0
        self._reading: dict[str, list[Ticket]] = {}
        # Per tracking channel (one per Redis node): subscribed, and when its last confirmed
        # heartbeat was sent. Serving needs every channel subscribed and confirmed recently.
        self._channels = channels
        self._on: set[int] = set()
        self._confirmed: dict[int, float] = {}
        self._fresh_until = 0.0

    # --- the read path -------------------------------------------------------------------------------

    def serving(self) -> bool:
        """True while every channel is subscribed and was confirmed within ``max_lag``."""
        return self._clock() < self._fresh_until

    def get(self, key: str) -> bytes | None:
        """The payload held for ``key``, or None (absent, expired, or the channel not known live)."""
        now = self._clock()
        with self._lock:
            if now >= self._fresh_until:
                return None
            found = self._entries.get(key)
            if found is None:
                return None
            if now >= found[1]:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return found[0]

    def begin(self, key: str) -> Ticket:
        """Take a ticket for a read of ``key`` about to be sent to Redis."""
        ticket = Ticket(key, self._epoch, self._clock())
        with self._lock:
            ticket.epoch = self._epoch
            if len(self._on) < self._channels:
                ticket.valid = False  # tracking is not on: a write now would not be reported
            else:
                self._reading.setdefault(key, []).append(ticket)
        return ticket

    def put(self, ticket: Ticket, payload: bytes, ttl: float | None) -> bool:
        """Keep ``payload`` read under ``ticket`` for at most ``ttl`` seconds (None: ``max_ttl``).

        Refused if a push named the key or the epoch moved since the ticket was taken, if the
        payload alone exceeds the byte bound, or if ``ttl`` is not positive. True if kept.
        """
        key = ticket.key
        size = len(key) + len(payload) + ENTRY_OVERHEAD
        with self._lock:
            self._forget(ticket)
            if size > self.max_bytes or (
                on("near_ticket") and (not ticket.valid or ticket.epoch != self._epoch)
            ):
                return False
            ttl = self.max_ttl if ttl is None else min(ttl, self.max_ttl)
            if ttl <= 0:
                return False
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (payload, ticket.started + ttl)
            self._bytes += size
            evicted = 0
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                evicted += 1
        if evicted:
            metrics.incr("near_evictions", evicted)
        return True

    def abandon(self, ticket: Ticket) -> None:
        """The read of ``ticket`` failed or is not to be kept."""
        with self._lock:
            self._forget(ticket)

    def discard(self, key: str) -> None:
        """Drop ``key`` now (this process deleted or overwrote it) and void reads in flight of it."""
        with self._lock:
            self._invalidate(key)

    # --- what the tracking channel reports -----------------------------------------------------------

    def invalidate(self, keys: Iterable[str] | None) -> None:
        """A push: these keys changed in Redis (None: everything did, a FLUSHDB)."""
        if keys is None:
            self.flush()
            return
        count = 0
        with self._lock:
            for key in keys:
                self._invalidate(key)
                count += 1
        metrics.incr("near_pushes", count)

    def tracking_on(self, channel: int = 0) -> None:
        """``channel`` is subscribed again: reads begun before now were not covered, so void them."""
        with self._lock:
            self._new_epoch()
            self._on.add(channel)

    def confirm(self, channel: int, sent: float) -> None:
        """A heartbeat sent at ``sent`` (monotonic) on ``channel`` came back: pushes before it are in."""
        with self._lock:
            if channel not in self._on:
                return
            self._confirmed[channel] = max(sent, self._confirmed.get(channel, 0.0))
            if len(self._confirmed) >= self._channels:
                self._fresh_until = min(self._confirmed.values()) + self.max_lag

    def flush(self, channel: int | None = None) -> None:
        """The channel broke (or may have missed a push): empty the cache, serve nothing until it is back.

        With ``channel`` the channel is also marked down until :meth:`tracking_on`.
        """
        with self._lock:
            if channel is not None:
                self._on.discard(channel)
                self._confirmed.pop(channel, None)
                self._fresh_until = 0.0
            self._new_epoch()
        metrics.incr("near_flushes")

    # --- state ----------------------------------------------------------------------------------------

    def size(self) -> tuple[int, int]:
        """(entries, bytes) held now."""
        with self._lock:
            return len(self._entries), self._bytes

    def _new_epoch(self) -> None:
        if not on("near_flush"):
            return
        self._epoch += 1
        self._entries.clear()
        self._bytes = 0
        for tickets in self._reading.values():
            for ticket in tickets:
                ticket.valid = False
        self._reading.clear()

    def _invalidate(self, key: str) -> None:
        if key in self._entries:
            self._drop(key)
        for ticket in self._reading.pop(key, ()):
            ticket.valid = False

    def _drop(self, key: str) -> None:
        payload, _deadline = self._entries.pop(key)
        self._bytes -= len(key) + len(payload) + ENTRY_OVERHEAD

    def _forget(self, ticket: Ticket) -> None:
        tickets = self._reading.get(ticket.key)
        if tickets is not None:
            if ticket in tickets:
                tickets.remove(ticket)
            if not tickets:
                del self._reading[ticket.key]
