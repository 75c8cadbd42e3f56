"""A small Django service for the cross-service event tests and benchmark, run as its own process.

    python -m tests.eventservice produce --create 50        make sellers 1..50 (one commit each)
    python -m tests.eventservice produce --updates 200 [--rate 500] [--seed 1]
                                                            rename sellers, one transaction each
    python -m tests.eventservice produce --updates 1 --die-before-append MARK
                                                            SIGKILLed between invalidation and events
    python -m tests.eventservice drain                      manage.py tagcache_drain
    python -m tests.eventservice consume [--name C]         manage.py tagcache_consume

Settings come from the environment, as a deployment's would: EVENTS_DB (the SQLite file both
services read; only the producer writes), EVENTS_REDIS (this service's own Redis), EVENTS_ROLE
(``producer`` publishes to EVENTS_STREAM; ``consumer`` reads EVENTS_SOURCE_URL's EVENTS_STREAM),
EVENTS_CLUSTER (EVENTS_REDIS is a Redis Cluster), EVENTS_OUTBOX (TAGCACHE["OUTBOX"] on),
and the consumer's knobs EVENTS_BATCH, EVENTS_CLAIM_IDLE, EVENTS_BLOCK, EVENTS_DEAD_CONSUMER_IDLE.
EVENTS_HANG_AT=N makes the consumer stop for good (without acknowledging) in its N-th
acknowledgement, after applying the batch, having created the file EVENTS_HANG_MARK: the tests
SIGKILL it there, mid-batch.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

PRODUCER_SERVICE = "catalog"
CONSUMER_SERVICE = "storefront"


def settings_for(role: str) -> dict[str, Any]:
    env = os.environ
    stream = env.get("EVENTS_STREAM", "catalog:events")
    events: dict[str, Any]
    if role == "producer":
        events = {"SERVICE": PRODUCER_SERVICE, "REGION": "eu-1", "STREAM": stream, "MAXLEN": 1_000_000}
    else:
        source = {"URL": env["EVENTS_SOURCE_URL"], "STREAM": stream}
        events = {
            "SERVICE": CONSUMER_SERVICE,
            "REGION": "eu-1",
            "PUBLISH": False,
            "SOURCES": {"catalog": source},
            "BATCH": int(env.get("EVENTS_BATCH", "100")),
            "CLAIM_IDLE": float(env.get("EVENTS_CLAIM_IDLE", "0.5")),
            "BLOCK": float(env.get("EVENTS_BLOCK", "0.1")),
            "RATE_LIMIT": float(env.get("EVENTS_RATE_LIMIT", "0")),
            "DEAD_CONSUMER_IDLE": float(env.get("EVENTS_DEAD_CONSUMER_IDLE", "3600")),
        }
    options: dict[str, Any] = {"SOCKET_TIMEOUT": 1.0, "SOCKET_CONNECT_TIMEOUT": 1.0}
    if env.get("EVENTS_CLUSTER"):  # EVENTS_REDIS names the nodes of a Redis Cluster
        options["CLIENT_CLASS"] = "django_tagcache.cluster.RedisClusterClient"
    return {
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django_tagcache",
            "tests.testapp",
        ],
        "DATABASES": {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": env["EVENTS_DB"]}},
        "CACHES": {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": env["EVENTS_REDIS"],
                "OPTIONS": options,
            }
        },
        # A short circuit-breaker reset: the tests stop this service's Redis for a while.
        "TAGCACHE": {
            "EVENTS": events,
            "CIRCUIT_BREAKER": {"RESET_TIMEOUT": 0.2},
            "OUTBOX": bool(env.get("EVENTS_OUTBOX")),
        },
        "USE_TZ": True,
    }


def setup(role: str) -> None:
    import django
    from django.conf import settings

    settings.configure(**settings_for(role))
    django.setup()


def produce(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import transaction

    from tests.testapp.models import Seller

    if args.die_before_append:
        die_before_append(args.die_before_append)

    if args.create:
        call_command("migrate", run_syncdb=True, verbosity=0)
        for n in range(args.create):
            Seller.objects.create(name=f"seller-{n + 1}-v0")
        return
    rng = random.Random(args.seed)
    pks = list(Seller.objects.values_list("pk", flat=True))
    started = time.perf_counter()
    for n in range(args.updates):
        if args.rate:
            delay = started + n / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # a steady rate of commits, as wall-clock time passes
        pk = pks[n % len(pks)] if args.seed is None else rng.choice(pks)
        with transaction.atomic():
            seller = Seller.objects.select_for_update().get(pk=pk)
            version = int(seller.name.rsplit("-v", 1)[1]) + 1
            seller.name = f"seller-{pk}-v{version}"
            seller.save()


def die_before_append(mark: str) -> None:
    """On a Redis Cluster: SIGKILL this process once an invalidation completed, right before its
    events are appended (another call there: docs/events.md), having created the file ``mark``."""
    from django_tagcache.core.cluster_scripts import ClusterScriptRunner

    real: Any = ClusterScriptRunner.__dict__["run"]  # a descriptor: bound to each runner below

    def run(self: ClusterScriptRunner, calls: Any) -> Any:
        if any(name == "cluster_event" for name, _keys, _args in calls):
            Path(mark).write_text("invalidated, events not appended")
            os.kill(os.getpid(), signal.SIGKILL)
        return real.__get__(self, ClusterScriptRunner)(calls)

    ClusterScriptRunner.run = run  # type: ignore[assignment]


def drain(args: argparse.Namespace) -> None:
    from django.core.management import call_command

    call_command("tagcache_drain")


def consume(args: argparse.Namespace) -> None:
    from django.core.management import call_command

    hang_at = int(os.environ.get("EVENTS_HANG_AT", "0"))
    if hang_at:
        from django_tagcache.events.streams import SourceStream

        real = SourceStream.acknowledge
        calls = [0]

        def acknowledge(self: SourceStream, *a: Any, **kw: Any) -> None:
            calls[0] += 1
            if calls[0] == hang_at:
                Path(os.environ["EVENTS_HANG_MARK"]).write_text("applied, not acknowledged")
                while True:
                    time.sleep(60)  # until SIGKILL
            real(self, *a, **kw)

        SourceStream.acknowledge = acknowledge  # type: ignore[method-assign]
    call_command("tagcache_consume", *(["--name", args.name] if args.name else []), verbosity=0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.eventservice")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--create", type=int, default=0)
    p.add_argument("--updates", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--die-before-append", metavar="MARK", default="")
    sub.add_parser("drain")
    c = sub.add_parser("consume")
    c.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    setup("consumer" if args.command == "consume" else "producer")
    {"produce": produce, "drain": drain, "consume": consume}[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])
