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
from dataclasses import dataclass, field
from typing import Any

VERSION = "1"
#: Fields every version-1 event carries.
FIELDS = ("v", "service", "region", "epoch", "seq", "ts", "ns", "source", "tags")
# Used with fullmatch only: "$" would also match before a final newline ("svc\n").
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,19}")
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


@dataclass(frozen=True, slots=True)
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
    #: Whose sequence ``seq`` counts: service, region and epoch (a restarted counter is a new one).
    producer: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.producer:
            object.__setattr__(self, "producer", f"{self.service}@{self.region}#{self.epoch}")


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
        if not _NAME.fullmatch(data[name]):
            raise BadEvent(
                f"field {name!r} must be 1-64 letters, digits, '_', '.' or '-', not {data[name]!r}"
            )
    numbers = {}
    for name in ("epoch", "seq", "ts"):
        if not _DIGITS.fullmatch(data[name]):
            raise BadEvent(f"field {name!r} must be a non-negative integer, not {data[name]!r}")
        numbers[name] = int(data[name])
    if numbers["seq"] < 1:
        raise BadEvent("field 'seq' must be 1 or more")
    namespace = data["ns"] or None
    if namespace is not None and not _NAME.fullmatch(namespace):
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


_UNKNOWN = object()
_BAD = object()
#: Most distinct producers, namespaces or sources a :class:`Decoder` remembers (then it starts over).
_REMEMBERED = 1024


class Decoder:
    """Decodes the entries of a stream as a consumer reads them: :func:`decode`, fast where it can be.

    The fast path takes the fields as the consumer reads them (``bytes`` from ``XREADGROUP``,
    ``str`` from the JSON text of ``lua/event_read.lua``), reads the ``tags`` array without a JSON
    parser when it holds plain strings (no escapes, no spaces: what every producer writes), and
    checks each producer, namespace and source once per decoder rather than once per event.
    Anything it does not recognise at once goes through :func:`decode`, which accepts exactly the
    same events and says why it refuses one. Tags are not checked here (see the consumer).
    """

    def __init__(self) -> None:
        self._producers: dict[tuple[Any, Any, Any], tuple[str, str, int, str]] = {}
        self._namespaces: dict[Any, Any] = {b"": None, "": None}  # raw -> namespace, or _BAD
        self._sources: dict[Any, str] = {}

    def __call__(self, fields: Mapping[Any, Any]) -> Event:
        """The event of ``fields``; raises :class:`BadEvent` saying why not."""
        try:
            event = self._fast(fields, _TEXT_KEYS if "v" in fields else _BYTES_KEYS)
        except (KeyError, TypeError, AttributeError, UnicodeDecodeError):
            event = None  # a missing field, not UTF-8, ...
        return decode(fields) if event is None else event

    def _fast(self, fields: Mapping[Any, Any], keys: tuple[Any, ...]) -> Event | None:
        version, k_seq, k_ts, k_service, k_region, k_epoch, k_ns, k_source, k_tags, one = keys
        if fields[version] != one:
            return None
        raw_seq, raw_ts = fields[k_seq], fields[k_ts]
        if not (  # each 1 to 19 ASCII digits, as the format's numbers are (checked inline: no call)
            raw_seq.isdigit()
            and raw_seq.isascii()
            and len(raw_seq) <= 19
            and raw_ts.isdigit()
            and raw_ts.isascii()
            and len(raw_ts) <= 19
        ):
            return None
        seq = int(raw_seq)
        who = (fields[k_service], fields[k_region], fields[k_epoch])
        producer = self._producers.get(who) or self._producer(who)
        namespace = self._namespaces.get(fields[k_ns], _UNKNOWN)
        if namespace is _UNKNOWN:
            namespace = self._namespace(fields[k_ns])
        raw_source = fields[k_source]
        source = self._sources.get(raw_source) or self._source(raw_source)
        tags = split_tags(fields[k_tags])
        if tags is None or producer is None or namespace is _BAD or seq < 1:
            return None
        service, region, epoch, name = producer
        return Event(service, region, epoch, seq, int(raw_ts), namespace, source, tags, name)

    def _producer(self, who: tuple[Any, Any, Any]) -> tuple[str, str, int, str] | None:
        service, region, epoch = (_str(part) for part in who)
        if not (_NAME.fullmatch(service) and _NAME.fullmatch(region) and _DIGITS.fullmatch(epoch)):
            return None
        if len(self._producers) >= _REMEMBERED:
            self._producers.clear()
        found = self._producers[who] = (service, region, int(epoch), f"{service}@{region}#{int(epoch)}")
        return found

    def _namespace(self, raw: Any) -> Any:
        namespace = _str(raw)
        if len(self._namespaces) >= _REMEMBERED:
            self._namespaces = {b"": None, "": None}
        found = self._namespaces[raw] = namespace if _NAME.fullmatch(namespace) else _BAD
        return found

    def _source(self, raw: Any) -> str:
        if len(self._sources) >= _REMEMBERED:
            self._sources.clear()
        found = self._sources[raw] = _str(raw)[:200]
        return found


_BYTES_KEYS = (b"v", b"seq", b"ts", b"service", b"region", b"epoch", b"ns", b"source", b"tags", b"1")
_TEXT_KEYS = ("v", "seq", "ts", "service", "region", "epoch", "ns", "source", "tags", "1")


def _str(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def split_tags(raw: bytes | str) -> tuple[str, ...] | None:
    """The tags of a ``tags`` field written as ``["a","b"]`` (or ``["a", "b"]``), else None.

    Without a backslash every ``"`` in the text delimits a string, so the array is exactly the
    pieces between the separators when it starts with ``["``, ends with ``"]`` and holds no other
    quote. Other spellings (escapes, other spaces) are valid JSON too: the caller parses those.
    """
    text = raw.decode() if isinstance(raw, bytes) else raw
    if len(text) < 4 or text[:2] != '["' or text[-2:] != '"]' or "\\" in text:
        return None
    inner = text[2:-2]
    if not inner.isprintable():  # JSON refuses raw control characters in a string
        return None
    quotes = inner.count('"')
    for separator in _SEPARATORS:
        tags = inner.split(separator)
        if quotes == 2 * (len(tags) - 1):
            return tuple(tags) if len(tags) <= MAX_TAGS else None
    return None


_SEPARATORS = ('","', '", "')  # json.dumps with separators=(",", ":"), and its default
