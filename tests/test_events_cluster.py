"""Cross-service events on a real Redis Cluster, where the stream and the tags live in different slots."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store
from django_tagcache.events.consumer import Consumer
from django_tagcache.events.lag import group_status

pytestmark = pytest.mark.cluster
STREAM = "svc:events"


@pytest.fixture
def cluster(redis_cluster: Any) -> Iterator[TagCache]:
    events = {"SERVICE": "shop", "REGION": "eu", "STREAM": STREAM, "BLOCK": 0.05}
    with override_settings(TAGCACHE={**settings.TAGCACHE, "CACHE": "cluster", "EVENTS": events}):
        yield TagCache("cluster")


def published(client: Any) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in client.xrange(STREAM)]


def test_events_follow_a_completed_cluster_invalidation(cluster: TagCache) -> None:
    tags = [f"t{i:03}" for i in range(450)]  # spread over every node
    for tag in tags[:50]:
        cluster.set(f"k-{tag}", 1, tags=[tag])
    cluster.invalidate_tags(*tags)
    assert all(cluster.get(f"k-{tag}") is None for tag in tags[:50])
    client: Any = get_store("cluster").client
    events = published(client)
    assert [len(json.loads(e["tags"])) for e in events] == [
        200,
        200,
        50,
    ]  # one per 200 tags, as on one server
    assert [int(e["seq"]) for e in events] == [1, 2, 3]
    assert {e["service"] for e in events} == {"shop"}
    # The counters share the stream's slot, as the single-slot script needs.
    assert client.keyslot(STREAM) == client.keyslot("{" + STREAM + "}:seq")


def test_on_a_cluster_a_failed_append_does_not_undo_the_invalidation(cluster: TagCache) -> None:
    # The limit docs/events.md states: the events come after the tags, in another call. Here the
    # append fails (the stream key holds a string): the invalidation stands, the call raises, so
    # the caller (or the outbox) knows to try again; on one server neither would have happened.
    cluster.set("k", 1, tags=["a"])
    client: Any = get_store("cluster").client
    client.set(STREAM, "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        cluster.invalidate_tags("a")
    assert cluster.get("k") is None


def test_a_consumer_applies_to_a_cluster_and_reads_a_stream_on_a_cluster(
    redis_cluster: Any, invalidated: list[set[str]]
) -> None:
    # Both sides on the cluster: the stream of "catalog" (CLUSTER: True) and this service's cache.
    caches: Any = settings.CACHES
    location = caches["cluster"]["LOCATION"].split(",")[0]
    source = {"URL": location, "STREAM": STREAM, "CLUSTER": True}
    producer = {"SERVICE": "catalog", "STREAM": STREAM}
    # BATCH 1: the first read fills its batch, so the second event is read by event_read.lua.
    consumer = {
        "SERVICE": "front",
        "PUBLISH": False,
        "SOURCES": {"catalog": source},
        "BLOCK": 0.05,
        "BATCH": 1,
    }
    cache = TagCache("cluster")
    with override_settings(TAGCACHE={**settings.TAGCACHE, "CACHE": "cluster", "EVENTS": producer}):
        cache.invalidate_tags("x", "y")
        cache.invalidate_tags("w")
    with override_settings(TAGCACHE={**settings.TAGCACHE, "CACHE": "cluster", "EVENTS": consumer}):
        cache.set("kx", 1, tags=["x"])
        cache.set("kz", 1, tags=["z"])
        invalidated.clear()
        worker = Consumer(name="c1")
        worker.run(until_idle=True)
        assert cache.get("kx") is None
        assert cache.get("kz") == 1
        assert invalidated == [{"x", "y"}, {"w"}]
        assert worker.stream._read_script is not None  # the backlog was read through the script
        worker.run(until_idle=True)
        status = group_status(worker.stream)
        assert (status["applied"], status["events_behind"], status["pending"]) == (2, 0, 0)
        # A duplicate is recognised through the marks the cluster keeps (pipelined, not a script).
        client: Any = worker.stream.client
        _id, fields = client.xrange(STREAM)[0]
        client.xadd(STREAM, fields)
        worker.run(until_idle=True)
        assert group_status(worker.stream)["duplicates"] == 1


def test_a_producer_killed_between_the_invalidation_and_its_event_leaves_it_to_the_outbox(
    redis_cluster: Any, tmp_path: Path
) -> None:
    # docs/events.md, "On Redis Cluster": the events are appended in a call of their own, after
    # the tags'. A producer (a real process, with the outbox on) is SIGKILLed exactly there; the
    # outbox row of its commit survives, and tagcache_drain replays the invalidation and the event.
    caches: Any = settings.CACHES
    env = {
        **os.environ,
        "EVENTS_DB": str(tmp_path / "catalog.sqlite3"),
        "EVENTS_REDIS": caches["cluster"]["LOCATION"],
        "EVENTS_CLUSTER": "1",
        "EVENTS_OUTBOX": "1",
        "EVENTS_STREAM": STREAM,
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }

    def service(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tests.eventservice", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)

    def outbox_rows() -> list[str]:
        with sqlite3.connect(env["EVENTS_DB"]) as db:
            return [tags for (tags,) in db.execute("SELECT tags FROM django_tagcache_pendinginvalidation")]

    created = service("produce", "--create", "1")
    assert created.returncode == 0, created.stderr[-3000:]
    client: Any = get_store("cluster").client
    client.delete(STREAM)
    mark = tmp_path / "killed"
    killed = service("produce", "--updates", "1", "--die-before-append", str(mark))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert mark.exists()  # killed where meant: the invalidation done, its event not appended
    assert client.xlen(STREAM) == 0
    (pending,) = outbox_rows()
    assert "shop.seller:1" in pending

    drained = service("drain")
    assert drained.returncode == 0, drained.stderr[-3000:]
    assert outbox_rows() == []
    (event,) = published(client)
    assert event["source"] == "outbox"
    assert "shop.seller:1" in json.loads(event["tags"])
