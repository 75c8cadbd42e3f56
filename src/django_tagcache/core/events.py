"""Cross-service invalidation events: the stream format (version 1), without Django.

An event announces one applied invalidation. The producer's invalidation script appends it to
a Redis Stream in the same call (see ``lua/invalidate.lua``); consumers in other services read
it with a consumer group and invalidate the same tags in their own Redis. docs/events.md gives
the format field by field, for services not written in Python.

Every field of a stream entry is a string:

``v``        format version, ``"1"``
``service``  the producing service; ``region`` its region
``epoch``    when the producer's sequence counter started (µs since the epoch, producer's Redis clock)
``seq``      the producer's sequence number: +1 for each event within one epoch
``ts``       when the invalidation was applied (µs, producer's Redis clock)
``ns``       the cache namespace, ``""`` for none
``source``   what invalidated: ``orm``, ``api``, ``outbox``, or the audited source (``admin:...``)
``tags``     a JSON array of the tags (strings)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

VERSION = "1"
#: Fields every version-1 event carries.
FIELDS = ("v", "service", "region", "epoch", "seq", "ts", "ns", "source", "tags")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_DIGITS = re.compile(r"^[0-9]{1,19}$")
#: Most tags one event may carry (an invalidation call sends at most 200; leave room for others).
MAX_TAGS = 10_000


@dataclass(frozen=True)
class EventOptions:
    """How this service announces its invalidations (``TAGCACHE['EVENTS']``), passed in explicitly."""

    stream: str
    maxlen: int
    service: str
    region: str

    @property
    def counters(self) -> str:
        """The hash of sequence counters: it shares the stream's Cluster slot (braces around its name)."""
        return counters_key(self.stream)

    @property
    def producer(self) -> str:
        return f"{self.service}@{self.region}"


def counters_key(stream: str) -> str:
    return "{" + stream + "}:seq"


def event_args(events: EventOptions, namespace: str | None, source: str, tags: Sequence[str]) -> list[Any]:
    """What invalidate.lua (or cluster_event.lua) takes after its own arguments to append an event.

    The script adds ``seq``, ``epoch`` and ``ts`` itself, under the same atomic call.
    """
    return [
        events.stream,
        events.counters,
        events.producer,
        events.maxlen,
        "v", VERSION,
        "service", events.service,
        "region", events.region,
        "ns", namespace or "",
        "source", source,
        "tags", json.dumps(list(tags), separators=(",", ":")),
    ]  # fmt: skip


class BadEvent(ValueError):
    """An entry that is not a valid event of a known version; the message says why."""


@dataclass(frozen=True)
class Event:
    """One decoded event."""

    service: str
    region: str
    epoch: int
    seq: int
    ts_us: int
    namespace: str | None
    source: str
    tags: tuple[str, ...]

    @property
    def producer(self) -> str:
        """Whose sequence ``seq`` counts: service, region and epoch (a restarted counter is a new one)."""
        return f"{self.service}@{self.region}#{self.epoch}"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError as exc:
            raise BadEvent(f"a field is not UTF-8: {exc}") from exc
    return str(value)


def decode(fields: Mapping[Any, Any]) -> Event:
    """Read a stream entry's fields as an :class:`Event`; raises :class:`BadEvent` saying why not.

    Checks everything before anything is applied: a bad event is refused whole, never in part.
    """
    data = {_text(key): _text(value) for key, value in fields.items()}
    version = data.get("v")
    if version is None:
        raise BadEvent("no format version (field 'v')")
    if version != VERSION:
        raise BadEvent(f"unknown format version {version!r}; this consumer reads version {VERSION}")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise BadEvent(f"missing field(s): {', '.join(missing)}")
    for name in ("service", "region"):
        if not _NAME.match(data[name]):
            raise BadEvent(
                f"field {name!r} must be 1-64 letters, digits, '_', '.' or '-', not {data[name]!r}"
            )
    numbers = {}
    for name in ("epoch", "seq", "ts"):
        if not _DIGITS.match(data[name]):
            raise BadEvent(f"field {name!r} must be a non-negative integer, not {data[name]!r}")
        numbers[name] = int(data[name])
    if numbers["seq"] < 1:
        raise BadEvent("field 'seq' must be 1 or more")
    namespace = data["ns"] or None
    if namespace is not None and not _NAME.match(namespace):
        raise BadEvent(f"field 'ns' is not a valid namespace: {namespace!r}")
    try:
        tags = json.loads(data["tags"])
    except ValueError as exc:
        raise BadEvent(f"field 'tags' is not JSON: {exc}") from exc
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise BadEvent("field 'tags' must be a JSON array of strings")
    if not tags or len(tags) > MAX_TAGS:
        raise BadEvent(f"field 'tags' must hold 1 to {MAX_TAGS} tags, not {len(tags)}")
    return Event(
        service=data["service"],
        region=data["region"],
        epoch=numbers["epoch"],
        seq=numbers["seq"],
        ts_us=numbers["ts"],
        namespace=namespace,
        source=data["source"][:200],
        tags=tuple(tags),
    )
