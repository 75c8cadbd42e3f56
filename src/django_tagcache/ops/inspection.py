"""Looking at what the cache holds: one tag in detail, or estimates over the whole keyspace.

Used by ``tagcache_inspect`` and ``tagcache_stats`` (``tagcache_prune`` is in pruning.py; the
three share keyspace.py). Per-key commands go in pipelines: never ``KEYS``, never one command
whose work grows with the database.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..backends import is_cluster
from ..core.keyspace import KeyLayout, scan_keys, server_now_ms

if TYPE_CHECKING:
    from ..core.store import TagStore


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def inspect_tag(store: TagStore, tag: str, limit: int) -> dict[str, Any]:
    """What Redis holds for ``tag``: its members (at most ``limit``), generation, TTLs, memory, drains."""
    client, base = store.client, store.keys.tag(tag)
    index, generation = base + ":i", base + ":g"
    cluster = is_cluster(client)
    pending = base + (":d" if cluster else ":p")  # the cluster store keeps its drains in a hash
    now = server_now_ms(client)
    pipe = client.pipeline(transaction=False)
    pipe.zcard(index)
    pipe.pttl(index)
    pipe.memory_usage(index)
    pipe.get(generation)
    pipe.pttl(generation)
    if cluster:
        pipe.hkeys(pending)
    else:
        pipe.smembers(pending)
    pipe.zrange(index, 0, max(limit, 1) - 1, withscores=True)
    count, index_pttl, memory, token, token_pttl, found, shown = pipe.execute()
    members: list[tuple[bytes, float]] = shown[:limit]
    asides = sorted(found)
    checks = client.pipeline(transaction=False)
    for member, _score in members:
        checks.pttl(member)
    for aside in asides:
        checks.zcard(aside)
    answers = checks.execute() if members or asides else []
    layout = KeyLayout.of(store)
    rows = []
    for (member, score), pttl in zip(members, answers, strict=False):
        kind = layout.classify(member)
        forever = score == float("inf")
        rows.append(
            {
                "key": kind[1] if kind and kind[0] == "entry" else None,
                "redis_key": _text(member),
                "exists": pttl != -2,
                # What the index believes (the score) and what Redis says of the entry itself.
                "expires_at": None if forever else _iso(score),
                "index_ttl_ms": None if forever else int(score - now),
                "pttl_ms": _ttl(pttl),
            }
        )
    drains = [
        {"index": _text(aside), "members": int(size)}
        for aside, size in zip(asides, answers[len(members) :], strict=True)
    ]
    return {
        "tag": tag,
        "index_key": index,
        "members": int(count),
        "shown": len(rows),
        "entries": rows,
        # On one server the generation also records the last completion ('<token>@<µs>').
        "generation": None if token is None else _text(token).partition("@")[0],
        "generation_pttl_ms": _ttl(token_pttl),
        "index_pttl_ms": _ttl(index_pttl),
        "index_memory_bytes": memory,
        "pending_drains": drains,
        "server_time": _iso(now),
    }


def _ttl(pttl: int) -> int | None:
    """PTTL as ms to live; None for a key without expiry or a missing key."""
    return None if pttl < 0 else int(pttl)


def keyspace_stats(store: TagStore, *, sample: int | None, memory_sample: int = 200) -> dict[str, Any]:
    """Entries, tags and index memory of this app's keys.

    Without ``sample``, one full SCAN over this app's keys counts them exactly. With ``sample``,
    only the first ``sample`` keys of the whole keyspace (hash order: effectively random) are
    read and the counts are scaled by DBSIZE. Index memory and members are always measured on
    at most ``memory_sample`` indexes and scaled to the index count: they are estimates.
    """
    client, layout = store.client, KeyLayout.of(store)
    counts = {"entry": 0, "index": 0, "pending": 0}
    measured: list[bytes] = []
    scanned, complete = 0, True
    pattern = None if sample else layout.pattern()
    for key in scan_keys(client, pattern):
        if sample and scanned >= sample:
            complete = False
            break
        scanned += 1
        kind = layout.classify(key)
        if kind is None or kind[0] not in counts:
            continue
        counts[kind[0]] += 1
        if kind[0] == "index" and len(measured) < memory_sample:
            measured.append(key)
    # A cluster client asks one node unless told otherwise; redis-py sums the primaries' answers.
    dbsize = int(client.dbsize(target_nodes="primaries") if is_cluster(client) else client.dbsize())
    scale = dbsize / scanned if sample and not complete and scanned else 1.0
    pipe = client.pipeline(transaction=False)
    for key in measured:
        pipe.memory_usage(key)
        pipe.zcard(key)
    replies = pipe.execute() if measured else []
    memory = sum(int(m or 0) for m in replies[0::2])
    members = sum(int(n or 0) for n in replies[1::2])
    indexes = round(counts["index"] * scale)
    entries = round(counts["entry"] * scale)
    per_index = indexes / len(measured) if measured else 0.0
    return {
        "method": "full scan" if not sample else ("sample" if not complete else "sample (whole keyspace)"),
        "keys_scanned": scanned,
        "dbsize": dbsize,
        "exact_counts": scale == 1.0,
        "entries": entries,
        "tags": indexes,
        "pending_drains": round(counts["pending"] * scale),
        "indexes_measured": len(measured),
        "index_memory_bytes": round(memory * per_index),
        "index_members": round(members * per_index),
        "members_per_entry": round(members * per_index / entries, 3) if entries else None,
    }
