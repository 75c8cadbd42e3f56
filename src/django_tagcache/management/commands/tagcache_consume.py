"""``manage.py tagcache_consume``: apply another service's invalidation events to this service's Redis."""

from __future__ import annotations

import signal
from argparse import ArgumentParser
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import ResponseError

from ...conf import conf
from ...core.retry import RETRYABLE
from ...events.consumer import Consumer

if TYPE_CHECKING:
    from ...events.streams import SourceStream


class Command(BaseCommand):
    help = (
        "Read a source stream of TAGCACHE['EVENTS']['SOURCES'] with a consumer group and apply each event "
        "to this service's cache (docs/events.md). Runs until SIGTERM or SIGINT, which let the batch in "
        "hand finish; --until-idle stops once nothing is left to read. --replay-dead-letters moves "
        "dead-lettered events back to the source stream instead (after their cause was fixed)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--source", metavar="NAME", help="Source to consume (needed when there are several)."
        )
        parser.add_argument(
            "--name", metavar="CONSUMER", help="Consumer name in the group (default host-pid)."
        )
        parser.add_argument(
            "--cache",
            metavar="ALIAS",
            help="Cache alias to apply to (default: TAGCACHE['CACHE'] and every alias of TAGCACHE['CACHES'], "
            "as invalidate_tags() reaches).",
        )
        parser.add_argument("--until-idle", action="store_true", help="Exit when a read finds nothing to do.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            metavar="PORT",
            help="Serve this process's Prometheus metrics on PORT (needs prometheus-client).",
        )

        replay = parser.add_argument_group(
            "replaying dead letters", "Append dead-lettered events to the source stream again, then exit."
        )
        replay.add_argument(
            "--replay-dead-letters",
            action="store_true",
            help="Move the source's dead-lettered events (all, or those the options below select) back "
            "to its stream, where the consumers apply them again.",
        )
        replay.add_argument(
            "--reason", metavar="TEXT", help="Only the entries whose dead_reason contains TEXT."
        )
        replay.add_argument(
            "--from-id",
            metavar="ID",
            default="-",
            help="Only dead-letter entries with this id or later (an entry id, or a time in ms).",
        )
        replay.add_argument(
            "--to-id",
            metavar="ID",
            default="+",
            help="Only dead-letter entries with this id or earlier (an entry id, or a time in ms).",
        )
        replay.add_argument(
            "--dry-run", action="store_true", help="List what would be replayed; change nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.EVENTS
        if settings is None or not settings.sources:
            raise CommandError("TAGCACHE['EVENTS']['SOURCES'] names no stream to consume (docs/events.md).")
        selecting = [
            f"--{name.replace('_', '-')}"
            for name, unset in (("reason", None), ("from_id", "-"), ("to_id", "+"), ("dry_run", False))
            if options[name] != unset
        ]
        if selecting and not options["replay_dead_letters"]:
            raise CommandError(f"{', '.join(selecting)} only go with --replay-dead-letters.")
        try:
            consumer = Consumer(
                options["source"], name=options["name"], cache=options["cache"], settings=settings
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["replay_dead_letters"]:
            self.replay(consumer.stream, options)
            return
        if options["metrics_port"] is not None:
            serve_metrics(options["metrics_port"])
        previous = {
            sig: signal.signal(sig, lambda *_: consumer.stop()) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            if options["verbosity"] >= 1:
                self.stdout.write(
                    f"Consuming {consumer.source.stream!r} of source {consumer.source.name!r} as "
                    f"{consumer.name!r} in group {settings.group!r}.",
                )
                self.stdout.flush()
            consumer.run(until_idle=options["until_idle"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if options["verbosity"] >= 1:
            self.stdout.write("Stopped.")

    def replay(self, stream: SourceStream, options: dict[str, Any]) -> None:
        """Move the selected dead letters back to the stream (or, with --dry-run, list them)."""
        reason, dry_run = options["reason"], options["dry_run"]
        done = 0
        try:
            for dead_id, fields in stream.dead_letters(options["from_id"], options["to_id"]):
                why = shown(fields).get("dead_reason", "")
                if reason is not None and reason not in why:
                    continue
                if dry_run:
                    self.stdout.write(f"{dead_id}: {describe(fields)}: {why}")
                else:
                    stream.replay(dead_id, fields)
                done += 1
        except ResponseError as exc:
            raise CommandError(f"Could not read the dead-letter stream: {exc}") from exc
        except RETRYABLE as exc:
            raise CommandError(f"The Redis of source {stream.source.name!r} is unreachable: {exc}") from exc
        where = f"{stream.source.dead_letter!r} to {stream.source.stream!r}"
        if dry_run:
            self.stdout.write(f"Would replay {done} dead-lettered event(s) from {where} (dry run).")
        else:
            self.stdout.write(f"Replayed {done} dead-lettered event(s) from {where}.")


def describe(fields: dict[Any, Any]) -> str:
    """The original entry, the event's producer and sequence number, and its tags, as far as known."""
    get = shown(fields).get
    return (
        f"entry {get('dead_id', '?')}, {get('service', '?')}@{get('region', '?')} seq {get('seq', '?')}, "
        f"tags {get('tags', '?')}"
    )


def shown(fields: dict[Any, Any]) -> dict[str, str]:
    """The fields as text, whatever bytes they hold (a dead letter may be one for not being UTF-8)."""
    return {
        (k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): (
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        )
        for k, v in fields.items()
    }


def serve_metrics(port: int) -> None:
    """Expose /metrics of this consumer process (its counters and its group's lag)."""
    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise CommandError(
            "--metrics-port needs prometheus-client (pip install prometheus-client)."
        ) from None
    start_http_server(port, addr="127.0.0.1")
