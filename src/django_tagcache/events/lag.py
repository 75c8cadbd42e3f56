"""How far a consumer group is behind its source stream, and what it counted (for stats and Prometheus)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from ..core.protocol import text
from .streams import SourceStream


def _ms(entry_id: Any) -> int:
    return int(text(entry_id).split("-", 1)[0])


def group_status(stream: SourceStream) -> dict[str, Any]:
    """Events and seconds behind, pending entries, and the consumer's counters, read from the source.

    ``events_behind`` counts entries not yet delivered plus entries delivered but not
    acknowledged; ``seconds_behind`` is the age of the oldest of them on the source's clock (0
    when caught up). A group that does not exist yet is behind by the whole stream.
    """
    client: Any = stream.client
    name, group = stream.source.stream, stream.group
    now = client.time()
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    groups = {text(g["name"]): g for g in (client.xinfo_groups(name) if client.exists(name) else [])}
    info = groups.get(group)
    length = int(client.xlen(name)) if info is not None or client.exists(name) else 0
    counters = {text(k): int(v) for k, v in client.hgetall(stream.consumed).items()}
    status: dict[str, Any] = {
        "source": stream.source.name,
        "stream": name,
        "group": group,
        "length": length,
        "applied": counters.get("applied", 0),
        "duplicates": counters.get("duplicates", 0),
        "dead_lettered": counters.get("dead_lettered", 0),
        "trimmed": counters.get("trimmed", 0),
        "dead_letter_length": int(client.xlen(stream.source.dead_letter)),
    }
    if info is None:
        first = client.xrange(name, count=1) if length else []
        status.update(pending=0, consumers=0, events_behind=length)
        status["seconds_behind"] = (now_ms - _ms(first[0][0])) / 1000 if first else 0.0
        return status
    pending = int(info["pending"])
    lag = info.get("lag")
    oldest: list[int] = []
    if pending:
        summary = client.xpending(name, group)
        if summary["min"] is not None:  # acknowledged meanwhile: nothing pending any more
            oldest.append(_ms(summary["min"]))
    undelivered = client.xrange(name, min="(" + text(info["last-delivered-id"]), count=1)
    if undelivered:
        oldest.append(_ms(undelivered[0][0]))
    if lag is None:  # Redis < 7, or a count Redis cannot give after deletions: count them
        lag = len(client.xrange(name, min="(" + text(info["last-delivered-id"]), count=100_000))
    status.update(
        pending=pending,
        consumers=int(info["consumers"]),
        events_behind=int(lag) + pending,
        seconds_behind=max(0, now_ms - min(oldest)) / 1000 if oldest else 0.0,
    )
    return status


def sources_status() -> list[dict[str, Any]]:
    """:func:`group_status` of every source in ``TAGCACHE['EVENTS']['SOURCES']``; an unreachable
    source gives ``{"source": name, "error": why}`` instead of raising."""
    from ..conf import conf

    settings = conf.EVENTS
    if settings is None:
        return []
    statuses = []
    for source in settings.sources.values():
        stream = SourceStream(source, settings)
        try:
            statuses.append(group_status(stream))
        except RedisError as exc:
            statuses.append({"source": source.name, "stream": source.stream, "error": str(exc)})
        finally:
            stream.client.close()
    return statuses
