"""``manage.py tagcache_consume``: apply another service's invalidation events to this service's Redis."""

from __future__ import annotations

import signal
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...conf import conf
from ...events.consumer import Consumer


class Command(BaseCommand):
    help = (
        "Read a source stream of TAGCACHE['EVENTS']['SOURCES'] with a consumer group and apply each event "
        "to this service's cache (docs/events.md). Runs until SIGTERM or SIGINT, which let the batch in "
        "hand finish; --until-idle stops once nothing is left to read."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--source", metavar="NAME", help="Source to consume (needed when there are several)."
        )
        parser.add_argument(
            "--name", metavar="CONSUMER", help="Consumer name in the group (default host-pid)."
        )
        parser.add_argument(
            "--cache", metavar="ALIAS", help="Cache alias to apply to (default TAGCACHE['CACHE'])."
        )
        parser.add_argument("--until-idle", action="store_true", help="Exit when a read finds nothing to do.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            metavar="PORT",
            help="Serve this process's Prometheus metrics on PORT (needs prometheus-client).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings = conf.EVENTS
        if settings is None or not settings.sources:
            raise CommandError("TAGCACHE['EVENTS']['SOURCES'] names no stream to consume (docs/events.md).")
        try:
            consumer = Consumer(
                options["source"], name=options["name"], cache=options["cache"], settings=settings
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
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


def serve_metrics(port: int) -> None:
    """Expose /metrics of this consumer process (its counters and its group's lag)."""
    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise CommandError(
            "--metrics-port needs prometheus-client (pip install prometheus-client)."
        ) from None
    start_http_server(port, addr="127.0.0.1")
