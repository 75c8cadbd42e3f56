"""Cross-service events in one process, on real Redis: publishing, the format, applying, dead letters.

The stream and the cache share the test server here; tests/test_events_services.py runs two
services in separate processes, each with its own Redis.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_tagcache import TagCache, invalidate_tags, tagcache
from django_tagcache.caching.api import get_store
from django_tagcache.caching.namespaces import in_namespace
from django_tagcache.conf import conf
from django_tagcache.core import metrics
from django_tagcache.core.events import BadEvent, Decoder, decode
from django_tagcache.core.protocol import plan_invalidate
from django_tagcache.core.scripts import server_major_version
from django_tagcache.events.consumer import Consumer
from django_tagcache.events.lag import group_status
from tests.counting import CountingConnection, count

STREAM = "svc:events"


def events_settings(**extra: Any) -> dict[str, Any]:
    source = {"URL": settings.REDIS_URL, "STREAM": STREAM}
    return {
        **settings.TAGCACHE,
        "EVENTS": {"SERVICE": "shop", "REGION": "eu", "STREAM": STREAM, "SOURCES": {"shop": source}, **extra},
    }


@pytest.fixture
def events() -> Iterator[Any]:
    with override_settings(TAGCACHE=events_settings(BLOCK=0.05, CLAIM_IDLE=0.2)):
        client = redis.Redis.from_url(settings.REDIS_URL)
        yield client
        client.close()


def stream_events(client: Any, stream: str = STREAM) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in client.xrange(stream)]


def consume(**kwargs: Any) -> Consumer:
    consumer = Consumer(name="c1", **kwargs)
    consumer.run(until_idle=True)
    return consumer


# --- publishing -----------------------------------------------------------------------------------


def test_an_invalidation_appends_one_event_with_every_field(events: Any) -> None:
    invalidate_tags("b", "a")
    invalidate_tags("a", source="admin:test")
    first, second = stream_events(events)
    assert set(first) == {"v", "service", "region", "epoch", "seq", "ts", "ns", "source", "tags"}
    assert (first["v"], first["service"], first["region"], first["ns"]) == ("1", "shop", "eu", "")
    assert json.loads(first["tags"]) == ["a", "b"]
    assert (first["source"], second["source"]) == ("api", "admin:test")
    assert (int(first["seq"]), int(second["seq"])) == (1, 2)
    assert first["epoch"] == second["epoch"]
    assert int(first["ts"]) <= int(second["ts"])


def test_the_event_rides_in_the_invalidation_call_itself(events: Any) -> None:
    tagcache.set("k", 1, tags=["a"])
    with count() as tally:
        invalidate_tags("a")
    assert tally.round_trips == 1
    assert len(stream_events(events)) == 1


def test_no_event_and_no_extra_argument_when_events_are_off() -> None:
    invalidate_tags("a")
    client: Any = redis.Redis.from_url(settings.REDIS_URL)
    assert client.exists("tagcache:events", STREAM) == 0
    store = get_store()
    assert store.events is None
    _keys, args = plan_invalidate(store.keys, store.options, ["a"])
    # chunk size, generation TTL, drain guard, token, no staleness budgets: nothing more
    assert len(args) == 5


def test_an_event_that_cannot_be_appended_stops_the_invalidation_too(events: Any) -> None:
    tagcache.set("k", 1, tags=["a"])
    events.set(STREAM, "not a stream")  # XADD fails with WRONGTYPE
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        invalidate_tags("a")
    assert tagcache.get("k") == 1  # not invalidated without its event: the two cannot diverge


def test_more_than_one_script_call_of_tags_is_one_event_per_call(events: Any) -> None:
    tags = [f"t{i:03}" for i in range(450)]
    invalidate_tags(*tags)
    published = stream_events(events)
    assert [len(json.loads(e["tags"])) for e in published] == [200, 200, 50]
    assert sorted(t for e in published for t in json.loads(e["tags"])) == sorted(tags)
    assert [int(e["seq"]) for e in published] == [1, 2, 3]


def test_sources_of_orm_commits_and_the_outbox(events: Any, django_db_blocker: Any) -> None:
    from django_tagcache.caching.origins import invalidating_as

    with invalidating_as("orm"):
        invalidate_tags("a")
    with invalidating_as("orm"):
        invalidate_tags("a", source="command:x")  # an audited source names itself
    assert [e["source"] for e in stream_events(events)] == ["orm", "command:x"]


@pytest.mark.django_db(transaction=True)
def test_a_save_is_announced_as_orm(events: Any) -> None:
    from tests.testapp.models import Category

    Category.objects.create(name="c")
    (event,) = [e for e in stream_events(events) if "shop.category" in json.loads(e["tags"])]
    assert event["source"] == "orm"


def test_the_namespace_travels_with_the_event(events: Any) -> None:
    with in_namespace("tenant1"):
        invalidate_tags("a")
    assert stream_events(events)[0]["ns"] == "tenant1"


def test_maxlen_trims_the_stream(events: Any) -> None:
    with override_settings(TAGCACHE=events_settings(MAXLEN=10)):
        for i in range(300):
            invalidate_tags(f"t{i}")
    assert events.xlen(STREAM) < 300


# --- the format -----------------------------------------------------------------------------------


GOOD = {
    "v": "1", "service": "s", "region": "r", "epoch": "1", "seq": "3", "ts": "5", "ns": "",
    "source": "api", "tags": '["a"]',
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": "2"}, "unknown format version '2'"),
        ({"v": None}, "no format version"),
        ({"seq": None}, "missing field(s): seq"),
        ({"seq": "-1"}, "'seq' must be a non-negative integer"),
        ({"seq": "0"}, "'seq' must be 1 or more"),
        ({"tags": "[1]"}, "JSON array of strings"),
        ({"tags": "{"}, "not JSON"),
        ({"tags": "[]"}, "1 to 10000 tags"),
        ({"service": "a b"}, "'service' must be"),
        ({"ns": "../x"}, "not a valid namespace"),
    ],
)
def test_decode_refuses_bad_events_saying_why(change: dict[str, str | None], reason: str) -> None:
    fields: dict[str, str] = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(BadEvent, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode(fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service", "s\n"),
        ("region", "r\n"),
        ("ns", "t1\n"),
        ("epoch", "1\n"),
        ("seq", "3\n"),
        ("ts", "5\n"),
    ],
)
def test_a_name_or_number_with_a_trailing_newline_is_refused(field: str, value: str) -> None:
    # A "$"-anchored pattern matches before a final newline: the whole value must match.
    fields = {**GOOD, field: value}
    with pytest.raises(BadEvent, match=f"'{field}'"):
        decode(fields)
    with pytest.raises(BadEvent, match=f"'{field}'"):
        Decoder()({k.encode(): v.encode() for k, v in fields.items()})


def test_decode_reads_bytes_as_redis_gives_them() -> None:
    event = decode({k.encode(): v.encode() for k, v in GOOD.items()})
    assert (event.producer, event.seq, event.tags) == ("s@r#1", 3, ("a",))


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"tags": '["a","b"]'},
        {"tags": '["a", "b"]'},
        {"tags": '[ "a","b"]'},
        {"tags": '["a" ,"b"]'},
        {"tags": '["a\\"b"]'},  # an escaped quote inside a tag
        {"tags": '["a\\u0062"]'},  # an escape: "ab"
        {"tags": '["a,\\"b"]'},
        {"tags": '["a","b", "c"]'},
        {"tags": '[""]'},
        {"tags": '["]'},
        {"tags": '["a"'},
        {"tags": '["\u00e9t\u00e9", "\u2603"]'},
        {"tags": '["a"]x'},
        {"tags": '["a"],["b"]'},
        {"tags": '["a","b"]'.replace("b", "\x01")},
        {"seq": "007"},
        {"seq": "0"},
        {"seq": "00"},
        {"seq": "1" * 19},
        {"seq": "1" * 20},
        {"seq": "+1"},
        {"seq": " 1"},
        {"seq": "\u0661"},  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, not to the format
        {"ts": ""},
        {"epoch": "x"},
        {"ns": "t1"},
        {"ns": "a b"},
        {"service": "a@b"},
        {"region": "x" * 65},
        {"service": "s\n"},
        {"source": "s" * 300},
        {"v": "1.0"},
        {"extra": "ignored"},
    ],
)
def test_the_fast_decoder_reads_exactly_what_decode_reads(change: dict[str, str]) -> None:
    # The consumer decodes with Decoder, which skips the JSON parser and the per-field checks
    # where it can; it must accept the same events as decode(), and refuse the others alike.
    # Fields come as bytes from XREADGROUP, as str from the JSON text of a backlog read.
    text = {**GOOD, **change}
    binary = {k.encode(): v.encode("utf-8", "surrogatepass") for k, v in text.items()}
    for fields in (binary, text):
        decoder = Decoder()
        for _twice in range(2):  # the second time from what the decoder remembers
            try:
                expected: Any = decode(fields)
            except BadEvent as exc:
                expected = str(exc)
            try:
                got: Any = decoder(fields)
            except BadEvent as exc:
                got = str(exc)
            assert got == expected
            if not isinstance(got, str):
                assert (got.producer, got.tags) == (expected.producer, expected.tags)


def test_the_fast_decoder_reads_fields_missing_or_not_bytes_through_decode() -> None:
    decoder = Decoder()
    assert decoder(dict(GOOD)) == decode(GOOD)  # str fields, as from a client decoding replies
    with pytest.raises(BadEvent, match="missing field"):
        decoder({k.encode(): v.encode() for k, v in GOOD.items() if k != "source"})
    with pytest.raises(BadEvent, match="not UTF-8"):
        decoder({**{k.encode(): v.encode() for k, v in GOOD.items()}, b"tags": b'["\xff"]'})


# --- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ({}, "SERVICE'] is required"),
        ({"SERVICE": "a b"}, "'SERVICE'] must be 1-64"),
        ({"SERVICE": "s", "MAXLEN": 0}, "'MAXLEN'] must be an integer >= 1"),
        ({"SERVICE": "s", "STREAM": "{x}"}, "without spaces or braces"),
        ({"SERVICE": "s\n"}, "'SERVICE'] must be 1-64"),
        ({"SERVICE": "s", "REGION": "r\n"}, "'REGION'] must be 1-64"),
        ({"SERVICE": "s", "GROUP": "g\n"}, "'GROUP'] must be 1-64"),
        ({"SERVICE": "s", "STREAM": "x\n"}, "without spaces or braces"),
        ({"SERVICE": "s", "SOURCES": {"x\n": {"URL": "redis://h"}}}, "'SOURCES'] must be 1-64"),
        ({"SERVICE": "s", "BATCH": True}, "'BATCH'] must be an integer"),
        ({"SERVICE": "s", "RATE_LIMIT": -1}, "RATE_LIMIT"),
        ({"SERVICE": "s", "CLAIM_IDLE": 0}, "CLAIM_IDLE"),
        ({"SERVICE": "s", "BLOCK": 61}, "at most 60 seconds"),
        (
            {"SERVICE": "s", "BLOCK": 2, "DEAD_CONSUMER_IDLE": 2},
            "DEAD_CONSUMER_IDLE'] must be longer than BLOCK",
        ),
        ({"SERVICE": "s", "DEAD_CONSUMER_IDLE": 0}, "DEAD_CONSUMER_IDLE"),
        ({"SERVICE": "s", "SOURCES": {"x": {}}}, "must be a dict with 'URL'"),
        ({"SERVICE": "s", "SOURCES": {"x": {"URL": "http://x"}}}, "redis://"),
        (
            {"SERVICE": "s", "SOURCES": {"x": {"URL": "redis://x", "DEAD_LETTER": "tagcache:events"}}},
            "differ",
        ),
        ({"SERVICE": "s", "TYPO": 1}, "keys among"),
        ("yes", "must be None or a dict"),
    ],
)
def test_bad_event_settings_are_refused_clearly(events: object, message: str) -> None:
    with override_settings(TAGCACHE={"EVENTS": events}), pytest.raises(ImproperlyConfigured, match=message):
        conf.EVENTS  # noqa: B018


def test_event_settings_defaults() -> None:
    with override_settings(TAGCACHE={"EVENTS": {"SERVICE": "s", "SOURCES": {"o": {"URL": "redis://h"}}}}):
        events = conf.EVENTS
    assert events is not None
    assert (events.group, events.region, events.stream, events.publish) == (
        "s",
        "default",
        "tagcache:events",
        True,
    )
    assert events.sources["o"].dead_letter == "tagcache:events:dead"


# --- consuming ------------------------------------------------------------------------------------


def publish(client: Any, tag_list: list[str], seq: int, *, epoch: int = 7, **change: Any) -> Any:
    fields = {**GOOD, "service": "orders", "epoch": str(epoch), "seq": str(seq), "tags": json.dumps(tag_list)}
    return client.xadd(STREAM, {**fields, **change})


@pytest.fixture
def consuming() -> Iterator[Any]:
    """This service consumes STREAM (written by hand as another service would) and publishes nothing."""
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BLOCK=0.05, CLAIM_IDLE=0.2)):
        client = redis.Redis.from_url(settings.REDIS_URL)
        yield client
        client.close()


def test_an_event_is_applied_then_acknowledged(consuming: Any, invalidated: list[set[str]]) -> None:
    tagcache.set("k", 1, tags=["a"])
    tagcache.set("other", 1, tags=["b"])
    publish(consuming, ["a"], 1)
    consume()
    assert tagcache.get("k") is None
    assert tagcache.get("other") == 1
    assert invalidated == [{"a"}]
    status = group_status(Consumer(name="c1").stream)
    assert (status["applied"], status["pending"], status["events_behind"]) == (1, 0, 0)
    assert metrics.snapshot()["events_applied"] == 1


def test_duplicates_and_older_events_are_not_applied_again(
    consuming: Any, invalidated: list[set[str]]
) -> None:
    publish(consuming, ["a", "b"], 5)
    consume()
    tagcache.set("k", 1, tags=["a"])  # computed after event 5 was applied: fresh
    publish(consuming, ["a", "b"], 5)  # a duplicate
    publish(consuming, ["a"], 3)  # older: event 5 covers it (docs/events.md)
    consume()
    assert tagcache.get("k") == 1
    assert invalidated == [{"a", "b"}]
    status = group_status(Consumer(name="c1").stream)
    assert (status["applied"], status["duplicates"]) == (1, 2)


def test_an_older_event_still_applies_to_the_tags_the_newer_one_did_not_name(
    consuming: Any, invalidated: list[set[str]]
) -> None:
    publish(consuming, ["a"], 5)
    publish(consuming, ["a", "b"], 4)  # delivered late: "b" was never invalidated by event 5
    consume()
    assert invalidated == [{"a"}, {"b"}] or invalidated == [{"a", "b"}]
    assert set().union(*invalidated) == {"a", "b"}


def test_a_restarted_counter_is_a_new_epoch_and_is_applied(
    consuming: Any, invalidated: list[set[str]]
) -> None:
    publish(consuming, ["a"], 50, epoch=7)
    consume()
    tagcache.set("k", 1, tags=["a"])
    publish(consuming, ["a"], 1, epoch=8)  # the producer's counters were lost: seq starts over
    consume()
    assert tagcache.get("k") is None


def test_events_are_applied_per_namespace(consuming: Any) -> None:
    with in_namespace("t1"):
        tagcache.set("k", 1, tags=["a"])
    tagcache.set("k", 2, tags=["a"])
    publish(consuming, ["a"], 1, ns="t1")
    consume()
    with in_namespace("t1"):
        assert tagcache.get("k") is None
    assert tagcache.get("k") == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": "9"}, "unknown format version '9'"),
        ({"tags": "not json"}, "not JSON"),
        ({"tags": json.dumps(["x" * 300])}, "bad event: "),  # longer than MAX_TAG_LENGTH
        ({"tags": json.dumps(["a", "has space"])}, "bad event: "),
    ],
)
def test_a_poison_event_is_dead_lettered_with_its_reason_and_the_rest_applied(
    consuming: Any, change: dict[str, Any], reason: str, invalidated: list[set[str]]
) -> None:
    tagcache.set("k", 1, tags=["a"])
    publish(consuming, ["a"], 1)
    bad_id = publish(consuming, ["a"], 2, **change)
    publish(consuming, ["b"], 3)
    consume()
    assert tagcache.get("k") is None
    assert set().union(*invalidated) == {"a", "b"}  # nothing of the poison event: "a" came from #1
    ((_id, dead),) = consuming.xrange(STREAM + ":dead")
    assert reason in dead[b"dead_reason"].decode()
    assert dead[b"dead_id"] == bad_id
    status = group_status(Consumer(name="c1").stream)
    assert (status["dead_lettered"], status["pending"], status["dead_letter_length"]) == (1, 0, 1)


@pytest.mark.parametrize(
    "change",
    [{"v": "9"}, {"tags": "not json"}, {"tags": json.dumps(["a", "has space"])}, {"service": "a b"}],
)
def test_a_poison_event_in_a_batch_of_good_ones_is_dead_lettered_and_the_others_applied_once(
    consuming: Any, change: dict[str, Any], invalidated: list[set[str]]
) -> None:
    for key, tag in (("ka", "a"), ("kb", "b"), ("kc", "c")):
        tagcache.set(key, 1, tags=[tag])
    publish(consuming, ["a"], 1)
    bad_id = publish(consuming, ["c"], 2, **change)
    publish(consuming, ["b"], 3)
    consumer = Consumer(name="c1")
    assert consumer.poll() == 3  # the three in one batch
    consumer.run(until_idle=True)
    # The good events in one application (not one at a time, not twice), none of the poison one.
    assert invalidated == [{"a", "b"}]
    assert (tagcache.get("ka"), tagcache.get("kb"), tagcache.get("kc")) == (None, None, 1)
    ((_id, dead),) = consuming.xrange(STREAM + ":dead")
    assert dead[b"dead_id"] == bad_id
    assert dead[b"dead_reason"].startswith(b"bad event: ")
    status = group_status(consumer.stream)
    assert (status["applied"], status["duplicates"], status["dead_lettered"], status["pending"]) == (
        2,
        0,
        1,
        0,
    )


@pytest.mark.parametrize("size", [1, 500])
def test_a_batch_costs_the_same_few_round_trips_whatever_its_size(consuming: Any, size: int) -> None:
    # Each event names two tags of its own: 1,000 tags for 500 events, five script calls of 200.
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BATCH=500, CLAIM_IDLE=60)):
        source = redis.Redis.from_url(settings.REDIS_URL, connection_class=CountingConnection)
        consumer = Consumer(name="c1", client=source)
        publish(consuming, ["warm"], 1)
        consumer.run(until_idle=True)  # own pending, the first claim, the scripts loaded
        pipe = consuming.pipeline(transaction=False)
        for n in range(size):
            publish(pipe, [f"a{n}", f"b{n}"], n + 2)
        pipe.execute()
        with count() as tally:
            assert consumer.poll() == size
    # Source: XREADGROUP; then XACK with the counters, one transaction. This service's Redis:
    # the marks read in one script call, the invalidation's script calls pipelined, the marks raised.
    assert tally.round_trips == 5, tally.commands
    assert tally.commands.count("XREADGROUP") == tally.commands.count("XACK") == 1
    assert group_status(consumer.stream)["applied"] == size + 1


def test_a_backlog_is_read_as_one_json_text_per_batch_and_applied_alike(
    consuming: Any, invalidated: list[set[str]]
) -> None:
    for tag in ("a", "b", "c", "d", "e", "f"):
        tagcache.set(tag, 1, tags=[tag])
    with in_namespace("t1"):
        tagcache.set("n", 1, tags=["a"])
    publish(consuming, ["a"], 1)
    publish(consuming, ["b"], 2)
    publish(consuming, ["c"], 2, epoch=8, service="billing")  # another producer
    publish(consuming, ["d"], 3, tags='[ "d" ]')  # valid JSON the fast path leaves to json.loads
    publish(consuming, ["a"], 1)  # a duplicate
    publish(consuming, ["a"], 9, ns="t1")
    publish(consuming, ["e", "f"], 10)
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BATCH=2, CLAIM_IDLE=60)):
        source = redis.Redis.from_url(settings.REDIS_URL, connection_class=CountingConnection)
        consumer = Consumer(name="c1", client=source)
        real_read_text = consumer.stream._read_text
        reads = 0

        def read_text(*args: Any) -> Any:
            nonlocal reads
            reads += 1
            return real_read_text(*args)

        consumer.stream._read_text = read_text  # type: ignore[method-assign,assignment]
        with count() as tally:
            consumer.run(until_idle=True)
    # Own pending entries first (XREADGROUP 0); the first read of new entries blocks, and it
    # filled its batch, so the next three read the backlog through the script, until one came
    # back short; then a blocking read finds the stream dry.
    assert tally.commands.count("XREADGROUP") == 3
    assert reads == 3
    assert [tagcache.get(tag) for tag in ("a", "b", "c", "d", "e", "f")] == [None] * 6
    with in_namespace("t1"):
        assert tagcache.get("n") is None
    status = group_status(consumer.stream)
    assert (status["pending"], status["applied"], status["duplicates"]) == (0, 6, 1)
    consumer.stream.client.close()


class SourceConnection(redis.Connection):
    """Counts the round trips to the source alone (CountingConnection counts every client's)."""

    round_trips = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        SourceConnection.round_trips += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def test_within_a_run_a_batch_is_acknowledged_with_the_next_read(consuming: Any) -> None:
    # Four round trips a batch in a run: on the source the read, carrying the previous batch's
    # XACK and counters; on this service's Redis the marks read, the invalidation, the marks raised.
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BATCH=500, CLAIM_IDLE=60)):
        pipe = consuming.pipeline(transaction=False)
        for n in range(1500):
            publish(pipe, [f"a{n}", f"b{n}"], n + 1)
        pipe.execute()
        source = redis.Redis.from_url(settings.REDIS_URL, connection_class=SourceConnection)
        consumer = Consumer(name="c1", client=source)
        trips: list[tuple[int, int]] = []
        SourceConnection.round_trips = 0
        with count() as tally:
            consumer.after_batch = lambda handled: trips.append(
                (SourceConnection.round_trips, tally.round_trips)
            )
            consumer.run(until_idle=True)
        # Batch 2 is the first read through event_read.lua (loading it); batch 3 is the steady state.
        assert trips[2][0] - trips[1][0] == 1  # the source: one round trip a batch (it was two)
        if server_major_version(consuming) >= 7:  # (on 6.2 the store's pipelined EVALSHAs cost one more)
            assert trips[2][1] - trips[1][1] == 3, tally.commands  # this service's Redis
        status = group_status(consumer.stream)  # the last batch acknowledged when the run ended
        assert (status["pending"], status["applied"]) == (0, 1500)
    consumer.stream.client.close()


def test_a_backlog_read_survives_the_source_losing_its_scripts(consuming: Any) -> None:
    for seq, tag in enumerate("abcd", start=1):
        tagcache.set(tag, 1, tags=[tag])
        publish(consuming, [tag], seq)
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BATCH=1, CLAIM_IDLE=60)):
        consumer = Consumer(name="c1")
        consumer._ack_with_next_read = True  # as within run(): the acknowledgement rides the read
        assert [consumer.poll(), consumer.poll()] == [1, 1]  # the second through event_read.lua
        consuming.script_flush()  # a restarted source: EVALSHA answers NOSCRIPT
        assert [consumer.poll(), consumer.poll()] == [1, 1]
        consumer.stream.flush()
    assert [tagcache.get(tag) for tag in "abcd"] == [None] * 4
    status = group_status(consumer.stream)
    assert (status["pending"], status["applied"], status["duplicates"]) == (0, 4, 0)
    consumer.stream.client.close()


def test_a_field_not_utf8_in_a_backlog_is_dead_lettered_and_the_rest_applied(consuming: Any) -> None:
    tagcache.set("k", 1, tags=["c"])
    publish(consuming, ["a"], 1)
    publish(consuming, ["b"], 2)
    publish(consuming, ["x"], 3, source=b"\xff")  # JSON cannot carry it: read again as bytes
    publish(consuming, ["c"], 4)
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BATCH=2, CLAIM_IDLE=60)):
        consumer = Consumer(name="c1")
        consumer._own_pending = False
        assert consumer.poll() == 2  # a full batch: the next read is a backlog read
        assert consumer.stream._backlog
        consumer.run(until_idle=True)
    assert tagcache.get("k") is None
    ((_id, dead),) = consuming.xrange(STREAM + ":dead")
    assert b"not UTF-8" in dead[b"dead_reason"]
    status = group_status(consumer.stream)
    assert (status["pending"], status["applied"], status["dead_lettered"]) == (0, 3, 1)
    consumer.stream.client.close()


def test_a_backlog_batch_costs_few_python_calls_per_event(consuming: Any) -> None:
    # Counted, not timed: every Python function call of one poll of 500 events read from a
    # backlog (cProfile counts calls exactly). Parsing Redis' reply of XREADGROUP cost ~420
    # calls per event; the JSON text of event_read.lua and the flat arguments of
    # event_marks.lua (seqs joined in one string) bring it to ~151 (with redis-py's own
    # parser; hiredis does fewer); keys and ids sent as bytes (redis-py encodes a str in five
    # more calls) and no per-event helper calls in planning and decoding bring it to ~114.
    import cProfile
    import pstats

    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BATCH=500, CLAIM_IDLE=60)):
        pipe = consuming.pipeline(transaction=False)
        for n in range(1000):
            publish(pipe, [f"a{n % 500}", f"b{n % 500}"], n + 1)  # 1,000 tags a batch
        pipe.execute()
        consumer = Consumer(name="c1")
        consumer._own_pending = False
        assert consumer.poll() == 500  # the scripts loaded, the tags seen once
        assert consumer.stream._backlog
        profile = cProfile.Profile()
        profile.enable()
        handled = consumer.poll()
        profile.disable()
    assert handled == 500
    calls = sum(stat[0] for stat in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]
    assert calls / handled < 125, calls / handled
    consumer.stream.client.close()


def test_an_event_reaching_an_idle_consumer_is_applied_by_the_read_it_was_blocked_in(
    consuming: Any,
) -> None:
    # No polling interval, no sleep: the consumer is blocked in XREADGROUP (BLOCK 30 s) when the
    # event is appended, and that same read returns it; nothing else is sent to the source first.
    tagcache.set("k", 1, tags=["a"])
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BLOCK=30, CLAIM_IDLE=60)):
        source = redis.Redis.from_url(settings.REDIS_URL, connection_class=CountingConnection)
        consumer = Consumer(name="c1", client=source)
        consumer._own_pending = False
        consumer._next_claim = consumer._next_sweep = float("inf")
        consumer.stream.ensure_group()
        watcher = redis.Redis.from_url(settings.REDIS_URL)

        def publish_once_blocked() -> None:
            while int(watcher.info("clients")["blocked_clients"]) == 0:
                time.sleep(0.001)
            publish(watcher, ["a"], 1)

        waits: list[float | None] = []
        real_wait = consumer._stop.wait

        def wait(timeout: float | None = None) -> bool:
            waits.append(timeout)
            return real_wait(timeout)

        consumer._stop.wait = wait  # type: ignore[method-assign]
        thread = threading.Thread(target=publish_once_blocked)
        thread.start()
        with count() as tally:
            handled = consumer.poll()
        thread.join()
    assert handled == 1
    assert waits == []  # no pause anywhere in the poll
    assert tagcache.get("k") is None
    assert tally.commands.count("XREADGROUP") == 1, tally.commands
    assert tally.commands[0] == "XREADGROUP"  # the blocked read came first, nothing before it
    consumer.stream.client.close()
    watcher.close()


def test_an_event_failing_to_apply_is_retried_then_dead_lettered(
    consuming: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_tagcache.events.apply import apply_events as real

    def failing(cache: TagCache, events: list[Any], ttl: int) -> Any:
        if any("boom" in e.tags for e in events):
            raise RuntimeError("cannot apply boom")
        return real(cache, events, ttl)

    monkeypatch.setattr("django_tagcache.events.consumer.apply_events", failing)
    tagcache.set("k", 1, tags=["a"])
    publish(consuming, ["boom"], 1)
    publish(consuming, ["a"], 2)
    consumer = Consumer(name="c1")
    for _round in range(10):
        consumer.poll()
    assert tagcache.get("k") is None
    ((_id, dead),) = consuming.xrange(STREAM + ":dead")
    assert dead[b"dead_reason"] == b"RuntimeError: cannot apply boom"
    assert dead[b"dead_attempts"] == b"5"
    assert group_status(consumer.stream)["pending"] == 0


def test_pending_events_of_a_dead_consumer_are_claimed(consuming: Any) -> None:
    tagcache.set("k", 1, tags=["a"])
    publish(consuming, ["a"], 1)
    dead = Consumer(name="dead")
    dead.stream.read("dead", 10, block_ms=1)  # delivered to "dead", which never acknowledges
    assert group_status(dead.stream)["pending"] == 1
    survivor = Consumer(name="survivor")
    deadline_polls = 0
    while tagcache.get("k") is not None and deadline_polls < 200:
        survivor.poll()  # claims once the entry has been idle for CLAIM_IDLE (0.2 s)
        deadline_polls += 1
    assert tagcache.get("k") is None
    assert group_status(survivor.stream)["pending"] == 0


def consumer_names(client: Any) -> list[str]:
    return [info["name"].decode() for info in client.xinfo_consumers(STREAM, "shop")]


def test_a_dead_consumer_is_removed_after_its_pending_events_are_taken_over(
    consuming: Any, invalidated: list[set[str]]
) -> None:
    tagcache.set("k", 1, tags=["a"])
    for seq in range(1, 4):
        publish(consuming, ["a"], seq)
    # CLAIM_IDLE an hour: nothing is taken over by XAUTOCLAIM, only by removing the dead consumer.
    with override_settings(
        TAGCACHE=events_settings(PUBLISH=False, BLOCK=0.05, CLAIM_IDLE=3600, DEAD_CONSUMER_IDLE=0.2)
    ):
        dead = Consumer(name="dead")
        assert len(dead.stream.read("dead", 10, block_ms=1)) == 3  # never acknowledged
        survivor = Consumer(name="survivor")
        polls = 0
        while "dead" in consumer_names(consuming) and polls < 500:
            survivor.poll()
            polls += 1
        survivor.run(until_idle=True)
    assert consumer_names(consuming) == ["survivor"]
    assert tagcache.get("k") is None
    assert invalidated == [{"a"}]
    status = group_status(survivor.stream)
    assert (status["pending"], status["applied"], status["dead_lettered"]) == (0, 3, 0)


def test_a_consumer_is_removed_only_once_it_holds_no_pending_entry(consuming: Any) -> None:
    for seq in range(1, 4):
        publish(consuming, ["a"], seq)
    with override_settings(
        TAGCACHE=events_settings(PUBLISH=False, BLOCK=0.05, CLAIM_IDLE=3600, DEAD_CONSUMER_IDLE=0.1)
    ):
        stream = Consumer(name="heir").stream
        stream.read("dead", 10, block_ms=1)
        publish(consuming, ["b"], 4)
        ((entry_id, _fields),) = stream.read("done", 10, block_ms=1)
        consuming.xack(STREAM, "shop", entry_id)  # "done" holds no pending entry
        time.sleep(0.15)  # idle past DEAD_CONSUMER_IDLE; the script checks it on the server's clock
        # One entry claimed per call: "dead" keeps the other two, so it stays in the group.
        assert stream.remove_idle_consumers("heir", 1) == (1, ["done"])
        assert consumer_names(consuming) == ["dead", "heir"]
        assert stream.remove_idle_consumers("heir", 1) == (1, [])
        assert stream.remove_idle_consumers("heir", 1) == (1, ["dead"])
    assert consumer_names(consuming) == ["heir"]
    pending = consuming.xpending_range(STREAM, "shop", "-", "+", 10)
    assert [p["consumer"] for p in pending] == [b"heir"] * 3


def delete_while_blocked(client: Any, deleted: str) -> threading.Thread:
    """Delete the stream (or its group) once the consumer is blocked in XREADGROUP, then publish."""

    def delete() -> None:
        while int(client.info("clients")["blocked_clients"]) == 0:
            time.sleep(0.001)
        delete_and_publish(client, deleted)
        client.close()

    thread = threading.Thread(target=delete)
    thread.start()
    return thread


def delete_and_publish(client: Any, deleted: str) -> None:
    if deleted == "stream":
        client.delete(STREAM)
    else:
        client.xgroup_destroy(STREAM, "shop")
    publish(client, ["b"], 2)  # appended before the consumer notices: it must not be skipped


@pytest.mark.parametrize("deleted", ["stream", "group"])
@pytest.mark.parametrize("path", ["own", "claim", "sweep", "read", "blocked"])
def test_a_deleted_stream_or_group_is_recreated_and_nothing_appended_since_is_lost(
    consuming: Any, caplog: pytest.LogCaptureFixture, deleted: str, path: str
) -> None:
    tagcache.set("k", 1, tags=["a"])
    tagcache.set("later", 1, tags=["b"])
    publish(consuming, ["a"], 1)
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BLOCK=30 if path == "blocked" else 0.05)):
        consumer = Consumer(name="c1")
        assert consumer.poll() == 1
        assert tagcache.get("k") is None
        # Steer the next poll to the command that meets the missing group first.
        consumer._own_pending = path == "own"
        consumer._next_claim = 0.0 if path == "claim" else float("inf")
        consumer._next_sweep = 0.0 if path == "sweep" else float("inf")
        if path == "blocked":
            thread = delete_while_blocked(redis.Redis.from_url(settings.REDIS_URL), deleted)
            consumer.poll()
            thread.join()
        else:
            delete_and_publish(consuming, deleted)
            consumer.poll()
        polls = 0
        while tagcache.get("later") is not None and polls < 10:
            consumer.poll()
            polls += 1
        assert tagcache.get("later") is None
    assert any("recreated" in record.getMessage() for record in caplog.records)
    assert group_status(consumer.stream)["pending"] == 0
    consumer.stream.client.close()


def test_applying_does_not_announce_again(events: Any) -> None:
    # This service publishes to STREAM and consumes it too: what it applies must not echo.
    invalidate_tags("a")
    consume()
    assert len(stream_events(events)) == 1
    status = group_status(Consumer(name="c1").stream)
    assert status["applied"] == 1


def test_lag_counts_what_is_not_applied_yet(consuming: Any) -> None:
    for seq in range(1, 4):
        publish(consuming, ["a"], seq)
    consumer = Consumer(name="c1")
    status = group_status(consumer.stream)
    assert (status["events_behind"], status["pending"]) == (3, 0)
    consumer.stream.read("c1", 1, block_ms=1)
    status = group_status(consumer.stream)
    assert (status["events_behind"], status["pending"]) == (3, 1)
    assert status["seconds_behind"] >= 0
    consumer.run(until_idle=True)
    status = group_status(consumer.stream)
    assert (status["events_behind"], status["seconds_behind"]) == (0, 0.0)


# --- observability and the command ----------------------------------------------------------------


def test_tagcache_stats_shows_each_source_lag_and_counts(consuming: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    publish(consuming, ["a"], 1)
    publish(consuming, ["a"], 1)  # a duplicate
    publish(consuming, ["b"], 2, v="7")  # dead-lettered
    publish(consuming, ["c"], 3)
    consumer = Consumer(name="c1")
    consumer.stream.read("c1", 3, block_ms=1)
    consumer.run(until_idle=True)  # its own pending first, then the rest
    out = StringIO()
    call_command("tagcache_stats", "--json", stdout=out)
    (status,) = json.loads(out.getvalue())["events"]
    assert {k: status[k] for k in ("applied", "duplicates", "dead_lettered", "events_behind", "pending")} == {
        "applied": 2,
        "duplicates": 1,
        "dead_lettered": 1,
        "events_behind": 0,
        "pending": 0,
    }
    publish(consuming, ["d"], 4)
    out = StringIO()
    call_command("tagcache_stats", stdout=out)
    text = out.getvalue()
    assert "Events from 'shop' (stream 'svc:events'):" in text
    assert "behind:           1 event(s)" in text
    assert "dead-lettered:    1 (1 in the dead-letter stream)" in text


def test_tagcache_stats_reports_an_unreachable_source() -> None:
    from io import StringIO

    from django.core.management import call_command

    from tests.servers import free_port

    source = {"URL": f"redis://127.0.0.1:{free_port()}", "STREAM": STREAM}
    with override_settings(TAGCACHE=events_settings(SOURCES={"gone": source})):
        out = StringIO()
        call_command("tagcache_stats", stdout=out)
    assert "Events from 'gone'" in out.getvalue()
    assert "unreachable:" in out.getvalue()


def test_prometheus_exports_the_lag_of_each_group(consuming: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from django_tagcache.events import prometheus
    from django_tagcache.ops import prometheus as counters

    registry = CollectorRegistry()
    prometheus.uninstall()
    counters.uninstall()
    counters.install(registry)  # the counters of ops/prometheus.py beside: no name is exported twice
    prometheus.install(registry)
    try:
        publish(consuming, ["a"], 1)
        publish(consuming, ["b"], 2)
        Consumer(name="c1").stream.read("c1", 1, block_ms=1)
        exposition = generate_latest(registry).decode()
    finally:
        prometheus.uninstall()
        counters.uninstall()
        counters.install()  # back in the default registry, as AppConfig.ready() left it
    assert 'tagcache_events_group_behind{group="shop",source="shop"} 2.0' in exposition
    assert 'tagcache_events_group_pending{group="shop",source="shop"} 1.0' in exposition
    assert "tagcache_events_group_seconds_behind" in exposition
    assert "tagcache_events_applied_total 0.0" in exposition


def test_the_command_refuses_what_it_cannot_consume() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="names no stream to consume"):
        call_command("tagcache_consume", "--until-idle")
    with (
        override_settings(TAGCACHE=events_settings()),
        pytest.raises(CommandError, match="Unknown event source"),
    ):
        call_command("tagcache_consume", "--source", "nope", "--until-idle")


@pytest.mark.parametrize("name", ["c1\n", "", "a b", "x" * 201])
def test_a_consumer_name_must_be_one_printable_word(consuming: Any, name: str) -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(ValueError, match="consumer name"):
        Consumer(name=name)
    with pytest.raises(CommandError, match="consumer name"):
        call_command("tagcache_consume", "--until-idle", "--name", name, verbosity=0)


def test_the_command_applies_until_idle(consuming: Any) -> None:
    from django.core.management import call_command

    tagcache.set("k", 1, tags=["a"])
    publish(consuming, ["a"], 1)
    call_command("tagcache_consume", "--until-idle", "--name", "cmd", verbosity=0)
    assert tagcache.get("k") is None


def replay(*args: str) -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("tagcache_consume", "--replay-dead-letters", *args, stdout=out)
    return out.getvalue()


def test_dead_letters_are_replayed_once_their_cause_is_fixed(
    consuming: Any, invalidated: list[set[str]]
) -> None:
    tagcache.set("k", 1, tags=["a"])
    publish(consuming, ["a"], 1, v="2")  # a version this consumer cannot read (yet)
    publish(consuming, ["b"], 2, tags="not json")
    consume()
    assert len(consuming.xrange(STREAM + ":dead")) == 2
    ((dead_id, _fields), _other) = consuming.xrange(STREAM + ":dead")

    # A dry run lists, and changes nothing.
    out = replay("--reason", "unknown format version", "--dry-run")
    assert f"{dead_id.decode()}: entry " in out
    assert 'seq 1, tags ["a"]' in out
    assert "Would replay 1 dead-lettered event(s)" in out
    assert consuming.xlen(STREAM + ":dead") == 2
    assert consuming.xlen(STREAM) == 2

    # The cause fixed (here: the dead letter's version is one the consumer reads), replay by reason.
    consuming.xadd(STREAM + ":dead", {"v": "1", "dead_reason": "x"}, id="*")  # not selected below
    fixed = {**consuming.xrange(STREAM + ":dead")[0][1], b"v": b"1"}
    consuming.xdel(STREAM + ":dead", dead_id)
    dead_id = consuming.xadd(STREAM + ":dead", fixed)
    assert "Replayed 1 dead-lettered event(s)" in replay("--reason", "unknown format version")
    assert dead_id not in [entry_id for entry_id, _f in consuming.xrange(STREAM + ":dead")]
    appended = stream_events(consuming)[-1]
    assert not any(name.startswith("dead_") for name in appended)
    assert (appended["seq"], json.loads(appended["tags"]), appended["v"]) == ("1", ["a"], "1")
    invalidated.clear()
    consume()
    assert tagcache.get("k") is None
    assert invalidated == [{"a"}]
    # The unfixed one is dead-lettered again, with its reason: never lost, never applied half.
    replay("--to-id", consuming.xrange(STREAM + ":dead")[0][0].decode())
    consume()
    reasons = [fields[b"dead_reason"] for _id, fields in consuming.xrange(STREAM + ":dead")]
    assert reasons[0] == b"x"
    assert b"not JSON" in reasons[-1]
    assert len(reasons) == 2


def test_replaying_selects_by_id_range_and_refuses_bad_options(consuming: Any) -> None:
    from django.core.management import CommandError, call_command

    ids = [consuming.xadd(STREAM + ":dead", {"v": "1", "dead_reason": f"r{n}"}) for n in range(5)]
    out = replay("--from-id", ids[1].decode(), "--to-id", ids[3].decode(), "--dry-run")
    assert [line.split(":")[0] for line in out.splitlines()[:-1]] == [i.decode() for i in ids[1:4]]
    assert "Would replay 3" in out
    with pytest.raises(CommandError, match="--dry-run only go with --replay-dead-letters"):
        call_command("tagcache_consume", "--dry-run")
    with pytest.raises(CommandError, match="Could not read the dead-letter stream"):
        replay("--from-id", "not-an-id")
    assert consuming.xlen(STREAM + ":dead") == 5


def test_a_rate_limit_paces_the_batches(consuming: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    for seq in range(1, 11):
        publish(consuming, [f"t{seq}"], seq)
    with override_settings(TAGCACHE=events_settings(PUBLISH=False, BATCH=2, RATE_LIMIT=4, BLOCK=0.05)):
        consumer = Consumer(name="c1")

        def wait(seconds: float) -> bool:
            waits.append(seconds)  # counted, not slept: the pacing asked for is what is checked
            return False

        monkeypatch.setattr(consumer._stop, "wait", wait)
        consumer.run(until_idle=True)
    # 10 events at 4/s with one second of burst allowed: at least 10/4 - 1 = 1.5 s of waiting asked.
    assert sum(waits) >= 1.5 - 1e-6


def test_the_source_failing_after_a_batch_was_applied_does_not_crash_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_tagcache.events.streams import SourceStream
    from tests.servers import RedisServer

    server = RedisServer.start()  # the source, stopped for real between applying and acknowledging
    try:
        source = {"URL": server.url, "STREAM": STREAM}
        with override_settings(TAGCACHE=events_settings(PUBLISH=False, SOURCES={"s": source}, BLOCK=0.05)):
            tagcache.set("k", 1, tags=["a"])
            publish(server.client(), ["a"], 1)
            real = SourceStream.acknowledge

            def acknowledge(self: SourceStream, *args: Any, **kwargs: Any) -> None:
                server.stop()
                real(self, *args, **kwargs)

            monkeypatch.setattr(SourceStream, "acknowledge", acknowledge)
            consumer = Consumer(name="c1")
            monkeypatch.setattr(consumer._stop, "wait", lambda seconds: False)  # backoffs not slept
            assert consumer.poll() == 0  # not acknowledged: applied again once redelivered
            assert tagcache.get("k") is None
            assert consumer.poll() == 0  # the source is still down: the consumer waits, it does not crash
    finally:
        server.stop()
