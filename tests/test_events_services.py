"""Two Django services in separate processes, each with its own Redis: one produces events, one consumes.

The producer (tests/eventservice.py) renames sellers, one transaction each; every commit
invalidates the seller's tags and appends an event to its stream, on its own Redis. The consumer
(``manage.py tagcache_consume`` in another process) applies the stream to the storefront's Redis,
where this test process has cached every seller's name (the values the events must remove).
Each scenario injects one fault for real and then counts, after the consumer caught up:

* lost: events of the stream whose every tag is not covered, in the storefront's Redis, by an
  applied event of the same producer at least as new (the marks the consumer keeps);
* stale: sellers whose cached name differs from the database.

Waits poll a condition under a deadline. EVENTS_TEST_DELAY sets how long the delayed consumer is
held (default 1 s; the scenario of the issue is 120).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_tagcache import TagCache
from django_tagcache.caching.api import reset_stores
from django_tagcache.conf import EventSource, EventsSettings
from django_tagcache.core.events import BadEvent, decode
from django_tagcache.events.lag import group_status
from django_tagcache.events.streams import SourceStream
from tests.servers import RedisServer, free_port

STREAM = "catalog:events"
SELLERS = 40
DELAY = float(os.environ.get("EVENTS_TEST_DELAY", "1"))
DEADLINE = 90.0
ROWS: list[dict[str, Any]] = []


def wait_for(what: str, condition: Callable[[], object], deadline: float = DEADLINE) -> None:
    """Poll ``condition`` until true; fail naming ``what`` once ``deadline`` seconds have passed."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class World:
    producer_redis: RedisServer
    consumer_redis: RedisServer
    consumer_args: tuple[str, ...]
    db: str
    base_env: dict[str, str]
    consumers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ended: set[int] = field(default_factory=set)  # consumers this test stopped or killed itself

    def check_consumers(self) -> None:
        """A consumer that ended on its own (a crash at start-up, say) fails the test at once."""
        for process in self.consumers:
            if process.pid not in self.ended and process.poll() is not None:
                raise AssertionError(f"consumer {process.args!r} exited with status {process.returncode}")

    def env(self, role: str, **extra: str) -> dict[str, str]:
        url = self.producer_redis.url if role == "producer" else self.consumer_redis.url
        return {**self.base_env, "EVENTS_REDIS": url, **extra}

    def produce(self, *args: str, **env: str) -> None:
        run = subprocess.run(
            [sys.executable, "-m", "tests.eventservice", "produce", *args],
            env=self.env("producer", **env),
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]

    def start_consumer(self, name: str, **env: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.eventservice", "consume", "--name", name],
            env=self.env("consumer", **env),
        )
        self.consumers.append(process)
        return process

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [process for process in self.consumers if process.poll() is None]

    def ensure_consumer(self) -> subprocess.Popen[bytes]:
        """A running consumer: the one left by the previous scenario, or a new one."""
        running = self.running()
        return running[0] if running else self.start_consumer(f"c{len(self.consumers)}")

    def stop_consumer(self, process: subprocess.Popen[bytes]) -> int:
        """SIGTERM, and the exit status (0: a clean shutdown)."""
        self.ended.add(process.pid)
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
        return process.wait(timeout=60)

    def restart_consumer_redis(self) -> None:
        self.consumer_redis = RedisServer.start(port=self.consumer_redis.port, extra_args=self.consumer_args)

    # --- what the storefront's side holds -------------------------------------------------------

    @property
    def source(self) -> Any:  # redis-py's stream replies are loosely typed
        return self.producer_redis.client()

    def stream(self) -> SourceStream:
        source = EventSource("catalog", self.producer_redis.url, STREAM, False, STREAM + ":dead")
        settings = EventsSettings(
            service="storefront", region="eu-1", publish=False, stream="x", maxlen=10**6,
            sources={"catalog": source}, group="storefront", batch=100, rate_limit=0,
            max_attempts=5, claim_idle=0.5, block=0.1,
        )  # fmt: skip
        return SourceStream(source, settings, self.source)

    def status(self) -> dict[str, Any]:
        self.check_consumers()
        return group_status(self.stream())

    def caught_up(self) -> bool:
        status = self.status()
        return bool(status["events_behind"] == 0 and status["pending"] == 0 and status["length"])

    def truth(self) -> dict[int, str]:
        with sqlite3.connect(self.db) as db:
            return dict(db.execute("SELECT id, name FROM shop_seller"))

    def populate(self) -> None:
        """Cache every seller's current name in the storefront's Redis, under the seller's tag."""
        cache = TagCache("storefront")
        for pk, name in self.truth().items():
            assert cache.set(f"seller:{pk}", name, timeout=None, tags=[f"shop.seller:{pk}"])

    def stale(self) -> int:
        cache = TagCache("storefront")
        cached = {pk: cache.get(f"seller:{pk}") for pk in self.truth()}
        return sum(1 for pk, name in self.truth().items() if cached[pk] is not None and cached[pk] != name)

    def lost(self) -> int:
        """Events of the consumed stream not covered by the marks in the storefront's Redis."""
        store = TagCache("storefront").store
        client: Any = store.client
        lost = 0
        for _id, fields in self.source.xrange(STREAM):
            try:
                event = decode(fields)
            except BadEvent:
                continue  # not an invalidation: the dead-letter stream has it
            marks = [client.zscore(store.keys.tag(tag) + ":v", event.producer) for tag in event.tags]
            lost += any(mark is None or mark < event.seq for mark in marks)
        return lost


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    work = tempfile.mkdtemp(prefix="tagcache-events-")
    producer_redis = RedisServer.start()
    # The storefront's Redis keeps its data over a restart (AOF): the "down" scenario stops it.
    args = ("--dir", work, "--appendonly", "yes", "--appendfsync", "always")
    consumer_redis = RedisServer.start(port=free_port(), extra_args=args)
    db = str(Path(work, "catalog.sqlite3"))
    base = {
        **os.environ,
        "EVENTS_DB": db,
        "EVENTS_SOURCE_URL": producer_redis.url,
        "EVENTS_STREAM": STREAM,
        "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
    }
    world = World(producer_redis, consumer_redis, args, db, base)
    world.produce("--create", str(SELLERS))
    producer_redis.client().delete(STREAM)  # the creations' events: nothing was cached before them
    storefront = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": consumer_redis.url,
        "OPTIONS": {"SOCKET_TIMEOUT": 2.0},
    }
    from django.conf import settings

    try:
        with override_settings(CACHES={**settings.CACHES, "storefront": storefront}):
            reset_stores()
            yield world
    finally:
        for process in world.consumers:
            if process.poll() is None:
                process.kill()
                process.wait()
        world.producer_redis.stop()
        world.consumer_redis.stop()
        reset_stores()
        print_table()


def run_scenario(world: World, name: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    before = world.status() if world.source.exists(STREAM) else {}
    length_before = world.source.xlen(STREAM)
    notes = body()
    reset_stores()  # the storefront's Redis may have restarted: fresh connections
    wait_for(f"{name}: the consumer to catch up", world.caught_up)
    after = world.status()
    row = {
        "scenario": name,
        "events": after["length"] - length_before,
        **{k: after[k] - before.get(k, 0) for k in ("applied", "duplicates", "dead_lettered")},
        "lost": world.lost(),
        "stale": world.stale(),
        **notes,
    }
    ROWS.append(row)
    print(json.dumps(row))
    return row


def print_table() -> None:
    columns = ["scenario", "events", "applied", "duplicates", "dead_lettered", "lost", "stale"]
    print()
    print(" | ".join(f"{c:>22}" if c == "scenario" else f"{c:>13}" for c in columns))
    for row in ROWS:
        print(" | ".join(f"{row[c]!s:>22}" if c == "scenario" else f"{row[c]!s:>13}" for c in columns))


def test_consumer_killed_mid_batch_and_restarted(world: World, tmp_path: Path) -> None:
    mark = tmp_path / "hung"

    def body() -> dict[str, Any]:
        for process in world.running():
            assert world.stop_consumer(process) == 0
        world.populate()
        world.produce("--updates", "200")
        victim = world.start_consumer(
            "victim", EVENTS_HANG_AT="2", EVENTS_HANG_MARK=str(mark), EVENTS_BATCH="50"
        )
        wait_for("the consumer to apply a batch it has not acknowledged", mark.exists)
        world.ended.add(victim.pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        pending = world.status()["pending"]
        assert pending == 50  # applied but not acknowledged: it must be taken over
        world.start_consumer("heir")  # another name: the heir claims the victim's entries
        return {"pending_at_kill": pending}

    row = run_scenario(world, "SIGKILL mid-batch", body)
    assert (row["lost"], row["stale"]) == (0, 0)
    assert row["applied"] + row["duplicates"] == 200
    assert row["duplicates"] >= 1  # the killed batch was applied twice: the second time is a duplicate


def test_duplicate_events(world: World) -> None:
    def body() -> dict[str, Any]:
        world.ensure_consumer()
        world.populate()
        first = world.source.xrevrange(STREAM, count=1)
        world.produce("--updates", "80")
        wait_for("the consumer to catch up", world.caught_up)
        world.populate()  # fresh values: duplicates must not remove them
        start = first[0][0] if first else "-"
        copies = [fields for entry_id, fields in world.source.xrange(STREAM, min=start) if entry_id != start]
        for fields in copies:
            world.source.xadd(STREAM, fields)  # the same events again, as a producer's retry would
        wait_for("the consumer to catch up", world.caught_up)
        cache = TagCache("storefront")
        kept = sum(cache.get(f"seller:{pk}") is not None for pk in world.truth())
        return {"copies": len(copies), "fresh_kept": kept}

    row = run_scenario(world, "duplicate events", body)
    assert (row["lost"], row["stale"]) == (0, 0)
    assert row["duplicates"] == row["copies"] == 80
    assert row["fresh_kept"] == SELLERS


def test_out_of_order_delivery(world: World) -> None:
    seed = int(os.environ.get("EVENTS_TEST_SEED", random.randrange(10**6)))

    def body() -> dict[str, Any]:
        world.populate()
        world.produce("--updates", "120", "--seed", str(seed), EVENTS_STREAM="catalog:raw")
        entries = [fields for _id, fields in world.source.xrange("catalog:raw")]
        random.Random(seed).shuffle(entries)
        for fields in entries:
            world.source.xadd(STREAM, fields)
        world.ensure_consumer()
        return {"seed": seed}

    row = run_scenario(world, "out-of-order", body)
    assert (row["lost"], row["stale"]) == (0, 0), f"seed {seed}"
    assert row["applied"] + row["duplicates"] == 120, f"seed {seed}"


def test_consumer_delayed_then_catching_up(world: World) -> None:
    consumer = world.ensure_consumer()

    def body() -> dict[str, Any]:
        world.populate()
        consumer.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        world.produce("--updates", "150", "--rate", "300")
        remaining = DELAY - (time.monotonic() - started)
        if remaining > 0:
            time.sleep(remaining)  # the delay under test, not a synchronisation
        held = world.status()
        consumer.send_signal(signal.SIGCONT)
        return {"behind_events": held["events_behind"], "behind_s": round(held["seconds_behind"], 2)}

    row = run_scenario(world, f"delayed {DELAY:g} s", body)
    assert (row["lost"], row["stale"]) == (0, 0)
    assert row["behind_events"] == 150
    assert row["behind_s"] >= DELAY * 0.5


def test_consumer_redis_down_for_a_while(world: World) -> None:
    def body() -> dict[str, Any]:
        world.ensure_consumer()
        world.populate()
        dead = world.status()["dead_lettered"]
        world.consumer_redis.process.terminate()  # a clean shutdown: the AOF keeps the cached values
        world.consumer_redis.process.wait()
        world.produce("--updates", "100")

        # The consumer has read a batch it cannot apply: it keeps it pending and retries (or, were
        # it to blame the events, dead-letters them: the row would show it).
        def taken() -> bool:
            status = world.status()
            return bool(status["pending"] > 0 or status["dead_lettered"] > dead)

        wait_for("the consumer to take a batch", taken)
        world.restart_consumer_redis()
        reset_stores()
        return {}

    row = run_scenario(world, "consumer Redis down", body)
    assert (row["lost"], row["stale"], row["dead_lettered"]) == (0, 0, 0)
    assert row["applied"] == 100


def test_a_poison_event(world: World) -> None:
    def body() -> dict[str, Any]:
        world.ensure_consumer()
        world.populate()
        world.produce("--updates", "30")
        world.source.xadd(STREAM, {"v": "1", "service": "catalog", "tags": "[not json"})
        world.source.xadd(STREAM, {"v": "99", "anything": "x"})
        world.produce("--updates", "30")
        return {}

    row = run_scenario(world, "poison events", body)
    assert (row["lost"], row["stale"]) == (0, 0)
    assert row["dead_lettered"] == 2
    assert row["applied"] == 60
    reasons = sorted(fields[b"dead_reason"].decode() for _id, fields in world.source.xrange(STREAM + ":dead"))
    assert reasons == [
        "bad event: missing field(s): region, epoch, seq, ts, ns, source",
        "bad event: unknown format version '99'; this consumer reads version 1",
    ]
    for process in world.running():
        assert world.stop_consumer(process) == 0  # SIGTERM: a clean exit


def test_a_dead_consumer_is_removed_after_its_events_are_taken_over(world: World, tmp_path: Path) -> None:
    mark = tmp_path / "hung"

    def consumers() -> list[str]:
        return [info["name"].decode() for info in world.source.xinfo_consumers(STREAM, "storefront")]

    def body() -> dict[str, Any]:
        for process in world.running():
            assert world.stop_consumer(process) == 0
        world.populate()
        world.produce("--updates", "100")
        doomed = world.start_consumer(
            "doomed", EVENTS_HANG_AT="1", EVENTS_HANG_MARK=str(mark), EVENTS_BATCH="40"
        )
        wait_for("the consumer to apply a batch it has not acknowledged", mark.exists)
        world.ended.add(doomed.pid)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        pending = world.status()["pending"]
        assert pending == 40
        # An heir that never takes entries over by CLAIM_IDLE (an hour): only the removal of the
        # dead consumer, which claims its entries first, can bring them back.
        world.start_consumer("heir", EVENTS_CLAIM_IDLE="3600", EVENTS_DEAD_CONSUMER_IDLE="0.5")
        wait_for("the dead consumer to be removed", lambda: "doomed" not in consumers())
        return {"pending_at_kill": pending, "consumers": consumers()}

    row = run_scenario(world, "dead consumer removed", body)
    assert (row["lost"], row["stale"]) == (0, 0)
    assert row["applied"] + row["duplicates"] == 100
    assert "doomed" not in row["consumers"]
    assert "heir" in row["consumers"]
    for process in world.running():
        assert world.stop_consumer(process) == 0
