"""Publish and consume django-tagcache invalidation events with plain redis-py: no Django.

    python events_without_django.py redis://127.0.0.1:6379/0

A service written without Django (or in another language: the same commands apply) can announce
its own invalidations on a stream that django-tagcache services consume, and read the stream of a
django-tagcache service to drop its own cached data. Format: version 1 (docs/events.md).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import redis

# The sequence counter and the event, in one atomic call (the same rules as django-tagcache's).
APPEND = """
local now = redis.call('TIME')
local stamp = now[1] .. string.format('%06d', tonumber(now[2]))
local seq = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
if seq == 1 then redis.call('HSET', KEYS[2], ARGV[1] .. '#epoch', stamp) end
local epoch = redis.call('HGET', KEYS[2], ARGV[1] .. '#epoch') or stamp
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
  'seq', seq, 'epoch', epoch, 'ts', stamp, unpack(ARGV, 3))
"""


def publish(
    client: redis.Redis, stream: str, service: str, region: str, tags: list[str], source: str = "api"
) -> str:
    """Append one version-1 event announcing that ``tags`` were invalidated; returns its entry id."""
    counters = "{" + stream + "}:seq"  # shares the stream's Cluster slot
    fields = {
        "v": "1",
        "service": service,
        "region": region,
        "ns": "",
        "source": source,
        "tags": json.dumps(tags),
    }
    args: list[str | int] = [f"{service}@{region}", 100_000]
    for name, value in fields.items():
        args += [name, value]
    entry_id = client.eval(APPEND, 2, stream, counters, *args)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def consume(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    invalidate: Callable[[list[str]], None],
    marks: dict[tuple[str, str], int],
) -> int:
    """Apply every event waiting for ``group``: invalidate, then acknowledge. Returns events applied.

    ``marks`` remembers the newest sequence applied per (tag, producer): an event that is not
    newer for any of its tags is a duplicate (or covered by a newer one) and only acknowledged.
    A real consumer keeps the marks where its cache is, and dead-letters events it cannot read.
    """
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    applied = 0
    while True:
        reply = client.xreadgroup(group, consumer, {stream: ">"}, count=100, block=100)
        if not reply:
            return applied
        for entry_id, raw in reply[0][1]:
            fields = {k.decode(): v.decode() for k, v in raw.items()}
            if fields.get("v") != "1":
                client.xack(stream, group, entry_id)  # a real consumer dead-letters it first
                continue
            producer = f"{fields['service']}@{fields['region']}#{fields['epoch']}"
            seq = int(fields["seq"])
            fresh = [t for t in json.loads(fields["tags"]) if seq > marks.get((t, producer), 0)]
            if fresh:
                invalidate(fresh)
                for tag in fresh:
                    marks[tag, producer] = seq
                applied += 1
            client.xack(stream, group, entry_id)  # only once applied


def main(url: str) -> None:
    client = redis.Redis.from_url(url)
    stream = "billing:events"
    publish(client, stream, "billing", "eu-1", ["invoice:7", "customer:3"])
    publish(client, stream, "billing", "eu-1", ["invoice:7"])
    invalidated: list[list[str]] = []
    marks: dict[tuple[str, str], int] = {}
    applied = consume(client, stream, "reports", "worker-1", invalidated.append, marks)
    print(f"applied {applied} event(s): {invalidated}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0")
