"""The event consumer: events per second through one consumer, and commit-to-applied lag.

    python -m benchmarks.events [--events 40000] [--rate 1000] [--seconds 5] [--repeat 3]

Two Redis servers on loopback: the producer's (REDIS_URL, holding the stream) and the consumer's
own cache Redis (started here).

* Throughput: ``--events`` version-1 events (2 tags each, from 5,000 tags, every tag indexing a
  cached entry at the start) are put on a stream; one consumer (this process, default batch of
  500) applies them all. Events per second is the median of ``--repeat`` runs. The reference
  is a bare loop that only reads, parses the tags and acknowledges (see :func:`floor`), run both
  ways a consumer can read (plain XREADGROUP, and event_read.lua): the faster one counts.
* Lag: a producer process runs ``invalidate_tags`` at ``--rate`` a second for ``--seconds``, each
  call appending its event in its own script call; the consumer (this process) records, for
  every event once its invalidation returned, the time since the event's ``ts`` (the producer's
  Redis clock when its invalidation ran, right after the commit; one host, one clock).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks._setup import configure_django, redis_url, result

STREAM = "bench:events"
TAGS = 5000


def events_settings(source_url: str, batch: int) -> dict[str, Any]:
    return {
        "SERVICE": "consumer",
        "PUBLISH": False,
        "SOURCES": {"producer": {"URL": source_url, "STREAM": STREAM}},
        "BATCH": batch,
        "BLOCK": 0.05,
    }


def fill(source: Any, count: int, stream: str, epoch: int = 1) -> None:
    """``count`` events as django-tagcache publishes them (counters included), pipelined.

    Each run takes an ``epoch`` of its own: a producer of an epoch already applied would find
    its marks, and every event of the run would be a duplicate, skipped, not applied.
    """
    pipe = source.pipeline(transaction=False)
    for seq in range(1, count + 1):
        tags = [f"t{seq % TAGS}", f"t{(seq * 7 + 1) % TAGS}"]
        pipe.xadd(
            stream,
            {
                "v": "1", "service": "producer", "region": "r", "epoch": epoch, "seq": seq,
                "ts": int(time.time() * 1e6), "ns": "", "source": "orm",
                "tags": json.dumps(tags, separators=(",", ":")),  # as producers write it
            },
        )  # fmt: skip
        if seq % 5000 == 0:
            pipe.execute()
    pipe.execute()


def floor(source: Any, stream: str, batch: int, *, script: bool) -> None:
    """The least any consumer does: read with a group, parse each entry's tags, acknowledge.

    As fast as redis-py allows: each batch's XACK travels with the next read, one round trip a
    batch. ``script`` reads as the consumer reads a backlog (lua/event_read.lua, one JSON text a
    batch); otherwise by plain XREADGROUP, whose reply redis-py parses element by element.
    """
    from django_tagcache.core.scripts import source as script_source

    group = "floor-script" if script else "floor"
    source.xgroup_create(stream, group, id="0")
    sha = source.script_load(script_source("event_read"))
    ids: list[Any] = []
    while True:
        pipe = source.pipeline(transaction=False)
        if ids:
            pipe.xack(stream, group, *ids)
        if script:
            pipe.evalsha(sha, 1, stream, group, "f", batch)
        else:
            pipe.xreadgroup(group, "f", {stream: ">"}, count=batch)
        reply = pipe.execute()[-1]
        if not reply:
            return
        if script:
            entries = json.loads(reply)
            ids = [entry_id for entry_id, flat in entries if json.loads(flat[flat.index("tags") + 1])]
        else:
            ids = [entry_id for entry_id, fields in reply[0][1] if json.loads(fields[b"tags"])]


def throughput(source_url: str, count: int, repeat: int, batch: int) -> tuple[list[float], list[float]]:
    import redis
    from django.test import override_settings

    from django_tagcache import tagcache
    from django_tagcache.caching.api import reset_stores
    from django_tagcache.events.consumer import Consumer
    from django_tagcache.events.lag import group_status

    rates: list[float] = []
    floors: list[float] = []
    source = redis.Redis.from_url(source_url)
    for run in range(repeat):
        stream = f"{STREAM}:{run}"
        settings = events_settings(source_url, batch)
        settings["SOURCES"]["producer"]["STREAM"] = stream
        with override_settings(TAGCACHE={"EVENTS": settings}):
            reset_stores()
            for tag in range(TAGS):
                tagcache.set(f"k{run}:{tag}", tag, timeout=600, tags=[f"t{tag}"])
            fill(source, count, stream, epoch=run + 1)
            consumer = Consumer(name="bench")
            started = time.perf_counter()
            consumer.run(until_idle=True)
            elapsed = time.perf_counter() - started
            status = group_status(consumer.stream)
            assert status["applied"] == count, status  # applied, none skipped as a duplicate
        bare = {}
        for script in (False, True):
            started = time.perf_counter()
            floor(source, stream, batch, script=script)
            bare[script] = count / (time.perf_counter() - started)
        rates.append(count / elapsed)
        floors.append(max(bare.values()))
        print(
            f"  run {run + 1}: {count} events in {elapsed:.3f} s: {count / elapsed:,.0f} events/s "
            f"(read and acknowledge only: {bare[False]:,.0f}/s by XREADGROUP, "
            f"{bare[True]:,.0f}/s by event_read.lua)"
        )
    return rates, floors


def produce(url: str, rate: float, seconds: float) -> None:
    """In the producer process: invalidate_tags at ``rate`` a second, each call publishing its event."""
    configure_django(url, tagcache={"EVENTS": {"SERVICE": "producer", "STREAM": STREAM}})
    from django_tagcache import invalidate_tags

    started = time.perf_counter()
    for n in range(int(rate * seconds)):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # commits arrive at a steady rate, as wall-clock time passes
        invalidate_tags(f"t{n % TAGS}", f"u{n % 97}")


def lag(source_url: str, rate: float, seconds: float) -> list[float]:
    """Commit-to-applied lag of every event, in ms, with a producer process at ``rate``."""
    from django.test import override_settings

    from django_tagcache.caching.api import reset_stores
    from django_tagcache.events import consumer as consumer_module
    from django_tagcache.events.apply import apply_events

    lags: list[float] = []

    def timed(cache: Any, events: Any, ttl: int) -> Any:
        outcome = apply_events(cache, events, ttl)
        now_us = time.time() * 1e6
        lags.extend((now_us - event.ts_us) / 1000 for event in events)
        return outcome

    setattr(consumer_module, "apply_events", timed)  # noqa: B010 - timed in this process only
    with override_settings(TAGCACHE={"EVENTS": events_settings(source_url, 500)}):
        reset_stores()
        consumer = consumer_module.Consumer(name="lag")
        consumer.poll()  # the group exists before the first event
        env = {**os.environ, "REDIS_URL": source_url}
        args = ["--produce", "--rate", str(rate), "--seconds", str(seconds)]
        producer = subprocess.Popen([sys.executable, "-m", "benchmarks.events", *args], env=env)
        while producer.poll() is None:
            consumer.poll()
        consumer.run(until_idle=True)
    setattr(consumer_module, "apply_events", apply_events)  # noqa: B010
    assert producer.returncode == 0
    return lags


def reply_parser() -> str:
    """Which parser redis-py reads replies with: hiredis' (C) when installed, else its own."""
    from redis.utils import HIREDIS_AVAILABLE

    return "hiredis" if HIREDIS_AVAILABLE else "redis-py's own (pure Python)"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--produce", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.produce:
        produce(os.environ["REDIS_URL"], args.rate, args.seconds)
        return
    from tests.servers import RedisServer

    with redis_url() as source_url:
        own = RedisServer.start()  # the consumer's cache Redis: another server
        print(f"  load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
        print(f"  reply parser: {reply_parser()} (the 'hiredis' extra installs hiredis')")
        try:
            configure_django(own.url)
            rates, floors = throughput(source_url, args.events, args.repeat, args.batch)
            ours, bare = statistics.median(rates), statistics.median(floors)
            result("event consumer: events/s, one consumer", ours, bare, ours / bare, ">= 20000", "/s")
            lags = lag(source_url, args.rate, args.seconds)
            print(f"  lag: {len(lags)} events at {args.rate:g}/s")
            label = f"event commit-to-applied lag at {args.rate:g}/s"
            result(f"{label}: p50", percentile(lags, 0.50), None, None, "", "ms")
            result(f"{label}: p99", percentile(lags, 0.99), None, None, "<= 10 ms", "ms")
        finally:
            own.stop()


if __name__ == "__main__":
    main()
