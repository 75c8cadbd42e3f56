"""The data of one in-process store: a small keyspace with expiry, and the tag indexes.

Callers hold :attr:`MemoryState.lock` around each call of :class:`~django_tagcache.core.memory.MemoryStore`;
these methods assume it is held. Times are milliseconds on the store's monotonic clock.
"""

from __future__ import annotations

import math
import threading

NEVER = math.inf


class MemoryState:
    """String keys with an expiry (entries, stale copies, locks, generations) and tag indexes.

    Expired keys are dropped when read, and all at once by a sweep that runs after as many writes
    as there were keys left by the last one (at least 1024), so memory follows live entries (at
    most about twice them plus 1024) at an amortized O(1) a write.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.values: dict[str, tuple[bytes, float]] = {}
        # Tag base key -> {entry key: the entry's expiry}: the ZSET of an index on Redis.
        self.indexes: dict[str, dict[str, float]] = {}
        # Tag base key -> {mark: its deadline}: the in-progress set (':w') of a tag on Redis, here
        # holding only the marks of invalidations that span several cache aliases (marks.lua).
        self.marks: dict[str, dict[str, float]] = {}
        self._writes = 0
        self._sweep_after = 1024

    def clear(self) -> None:
        with self.lock:
            self.values.clear()
            self.indexes.clear()
            self.marks.clear()
            self._writes = 0

    def read(self, key: str, now: float) -> bytes | None:
        item = self.values.get(key)
        if item is None:
            return None
        if item[1] <= now:
            del self.values[key]
            return None
        return item[0]

    def put(self, key: str, value: bytes, expiry: float) -> None:
        self.values[key] = (value, expiry)

    def put_new(self, key: str, value: bytes, expiry: float, now: float) -> bool:
        """SET NX: store ``value`` unless ``key`` holds a live value."""
        if self.read(key, now) is not None:
            return False
        self.put(key, value, expiry)
        return True

    def delete(self, key: str) -> bool:
        return self.values.pop(key, None) is not None

    def index(self, base: str, entry: str, expiry: float) -> None:
        self.indexes.setdefault(base, {})[entry] = expiry

    def take_index(self, base: str) -> list[str]:
        """Remove the index of a tag and return its members (an invalidation's read and DEL)."""
        return list(self.indexes.pop(base, {}))

    def purge(self, entry: str, stale_ms: int, now: float) -> int:
        """Delete ``entry`` and its stale copy (budget 0), or keep it as ``entry:stale`` for at most
        ``stale_ms``; returns the keys deleted, or 1 if the entry was softened (as invalidate.lua counts)."""
        item = self.values.pop(entry, None)
        live = item is not None and item[1] > now
        if stale_ms == 0:
            stale = self.read(entry + ":stale", now) is not None and self.delete(entry + ":stale")
            return int(live) + int(stale)
        if item is None or not live:
            return 0
        self.put(entry + ":stale", item[0], min(item[1], now + stale_ms))
        return 1

    def after_write(self, now: float) -> None:
        self._writes += 1
        if self._writes >= self._sweep_after:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop expired keys, index members whose entry is gone, and empty indexes."""
        self._writes = 0
        for key in [key for key, (_, expiry) in self.values.items() if expiry <= now]:
            del self.values[key]
        for base in list(self.indexes):
            members = self.indexes[base]
            # A member whose entry a soft purge kept as a stale copy stays: a hard purge of this
            # tag must still reach that copy.
            gone = [e for e in members if e not in self.values and e + ":stale" not in self.values]
            for entry in gone:
                del members[entry]
            if not members:
                del self.indexes[base]
        # The next sweep comes after as many writes as there are keys left: at most half of what is
        # held is dead, and each write pays O(1) of sweeping on average.
        self._sweep_after = max(1024, len(self.values))

    def marked(self, base: str, now: float) -> bool:
        """Whether the tag of ``base`` holds an unexpired mark (expired ones are dropped)."""
        marks = self.marks.get(base)
        if not marks:
            return False
        for mark in [mark for mark, deadline in marks.items() if deadline <= now]:
            del marks[mark]
        if not marks:
            del self.marks[base]
        return bool(marks)
