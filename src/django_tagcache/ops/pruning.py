"""Pruning tag indexes: drop members whose entry expired or is gone, finish interrupted drains.

Used by ``tagcache_prune``. Every step is bounded: indexes are found with ``SCAN``, read with
``ZSCAN``, and each command removes about ``batch`` members. What may be removed, and why it is
safe while the application keeps writing:

- **Expired members** (score, the entry's expiry, before the server's clock): the entry is gone
  with certainty, and a write that re-adds it gives it a later score. Removal is a range by score.
- **Members whose entry is gone** (deleted, evicted, or removed by another tag's invalidation):
  the index is ``WATCH``-ed before the entries are checked, so a write that re-creates an entry
  and re-adds it to this index in between aborts the removal (the chunk is retried, then skipped).
  Not on Redis Cluster: there a write indexes an entry a moment before it stores it, so a
  missing entry may be one about to be written; only expired members are pruned there.
- **Interrupted invalidations** (indexes renamed aside and listed in a pending set): drained
  with the store's own chunked drain, as the next invalidation of the tag would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import WatchError

from ..backends import is_cluster
from ..core.keyspace import KeyLayout, scan_keys, server_now_ms

if TYPE_CHECKING:
    import redis

    from ..core.store import TagStore

WATCH_ATTEMPTS = 3


@dataclass
class PruneReport:
    indexes: int = 0
    expired_members: int = 0
    dead_members: int = 0
    busy_chunks: int = 0  # chunks skipped: their index kept changing under WATCH
    drains: int = 0
    drained_entries: int = 0
    dry_run: bool = False
    checks_entries: bool = True  # False on Redis Cluster (see the module docstring)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_tag_keys(store: TagStore) -> int:
    """How many indexes and pending sets there are to prune (one SCAN pass, for a progress bar)."""
    return sum(1 for _ in scan_keys(store.client, KeyLayout.of(store).tag_pattern()))


def prune(
    store: TagStore,
    *,
    dry_run: bool = False,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> PruneReport:
    """Prune every tag index of ``store``; with ``dry_run``, count what would go and change nothing."""
    client, layout = store.client, KeyLayout.of(store)
    cluster = is_cluster(client)
    report = PruneReport(dry_run=dry_run, checks_entries=not cluster)
    now = server_now_ms(client)
    for done, key in enumerate(scan_keys(client, layout.tag_pattern()), start=1):
        kind = layout.classify(key)
        if done % 1000 == 0:
            # A clock read now and then is enough: an older "now" only makes pruning more cautious.
            now = server_now_ms(client)
        if kind and kind[0] == "index":
            report.indexes += 1
            report.expired_members += _prune_expired(client, key, now, batch, dry_run)
            if not cluster:
                dead, busy = _prune_dead(client, key, now, batch, dry_run)
                report.dead_members += dead
                report.busy_chunks += busy
        elif kind and kind[0] == "pending" and not cluster:
            for aside in sorted(client.smembers(key)):
                report.drains += 1
                if dry_run:
                    report.drained_entries += int(client.zcard(aside))
                else:
                    report.drained_entries += store.drain(_text(aside), _text(key))
        if progress is not None:
            progress(done)
    return report


def _prune_expired(client: redis.Redis, key: bytes, now: int, batch: int, dry_run: bool) -> int:
    expired = f"({now}"
    if dry_run:
        return int(client.zcount(key, "-inf", expired))
    removed = 0
    while True:
        count = int(client.zcount(key, "-inf", expired))
        if count <= batch:
            return removed + (int(client.zremrangebyscore(key, "-inf", expired)) if count else 0)
        # The batch-th lowest score bounds this step: every member scored at or below it is expired,
        # so no race with a concurrent write can make this range hold a live member.
        bound: list[tuple[bytes, float]] = client.zrange(key, batch - 1, batch - 1, withscores=True)  # type: ignore[assignment]
        removed += int(client.zremrangebyscore(key, "-inf", repr(float(bound[0][1]))))


def _prune_dead(client: redis.Redis, key: bytes, now: int, batch: int, dry_run: bool) -> tuple[int, int]:
    dead = busy = 0
    cursor = 0
    while True:
        reply: tuple[int, list[tuple[bytes, float]]] = client.zscan(key, cursor, count=batch)  # type: ignore[assignment]
        cursor, items = reply
        # Expired members were handled by score; here, members that should still be alive.
        members = [member for member, score in items if score >= now]
        if members:
            removed = _remove_missing(client, key, members, dry_run)
            if removed is None:
                busy += 1
            else:
                dead += removed
        if cursor == 0:
            return dead, busy


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _missing(client: redis.Redis, members: Sequence[bytes]) -> list[bytes]:
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.exists(member)
    return [member for member, found in zip(members, pipe.execute(), strict=True) if not found]


def _remove_missing(client: redis.Redis, key: bytes, members: Sequence[bytes], dry_run: bool) -> int | None:
    """Remove the members whose entry is missing; None if the index kept changing (nothing removed)."""
    if dry_run:
        return len(_missing(client, members))
    for _attempt in range(WATCH_ATTEMPTS):
        with client.pipeline(transaction=True) as pipe:
            pipe.watch(key)  # type: ignore[no-untyped-call]
            # Read on another connection: WATCH only cares that nobody writes the index meanwhile.
            missing = _missing(client, members)
            if not missing:
                return 0
            pipe.multi()
            pipe.zrem(key, *missing)
            try:
                (removed,) = pipe.execute()
            except WatchError:
                continue
            return int(removed)
    return None
