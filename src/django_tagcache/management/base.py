"""What every ``tagcache_*`` command shares: ``--cache``, ``--json``, and the exit codes.

Exit codes: 0 done; 1 bad input (unknown alias, model or primary key, malformed tag); 2 usage
error (argparse: unknown option, missing argument); 3 Redis unreachable or refusing (an error
reply such as ``NOPERM`` from an ACL user); 4 verification failed (``tagcache_scripts --check``).

A command call is one unit of work: its Redis calls share one time budget (``RETRY['BUDGET']``).
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import ClusterDownError, RedisClusterException, RedisError

from ..backends import SUPPORTED, backend_kind
from ..caching.api import get_store
from ..caching.budget import redis_budget
from ..caching.exceptions import TagCacheUnavailable
from ..caching.namespaces import in_namespace
from ..caching.namespaces import validate as validate_namespace
from ..conf import conf
from ..core.retry import RETRYABLE

if TYPE_CHECKING:
    from ..core.store import TagStore

EXIT_BAD_INPUT = 1
EXIT_UNREACHABLE = 3
EXIT_CHECK_FAILED = 4

# Connection errors, timeouts, an exhausted retry budget, and a cluster that cannot be reached.
UNREACHABLE: tuple[type[Exception], ...] = (
    *RETRYABLE,
    TagCacheUnavailable,
    ClusterDownError,
    RedisClusterException,
)

# What exits with status 3: the above, and an error reply (NOPERM from an ACL user, say).
REDIS_FAILURES: tuple[type[Exception], ...] = (*UNREACHABLE, RedisError)


def redis_failure(alias: str, exc: Exception) -> CommandError:
    """The CommandError (exit status 3) for Redis being unreachable, or refusing with an error reply."""
    if isinstance(exc, UNREACHABLE):
        return CommandError(
            f"Redis behind cache {alias!r} is unreachable: {exc}", returncode=EXIT_UNREACHABLE
        )
    return CommandError(
        f"Redis behind cache {alias!r} refused the command: {type(exc).__name__}: {exc}",
        returncode=EXIT_UNREACHABLE,
    )


class TagCacheCommand(BaseCommand):
    """Base of the commands: subclasses implement :meth:`add_command_arguments` and :meth:`run`."""

    #: Whether the command has a ``--json`` switch.
    json_output = True
    #: Whether the command reads Redis itself (keys, memory, scripts), which the in-process store has not.
    needs_redis = False

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--cache",
            metavar="ALIAS",
            help="Cache alias in CACHES (default: TAGCACHE['CACHE']).",
        )
        parser.add_argument(
            "--namespace",
            metavar="NAME",
            help="Work in this cache namespace (default: what TAGCACHE['NAMESPACE'] gives, usually none).",
        )
        if self.json_output:
            parser.add_argument("--json", action="store_true", help="Print one JSON document on stdout.")
        self.add_command_arguments(parser)

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        """Add the command's own arguments."""

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["cache"] or conf.CACHE
        self.check_alias(alias)
        try:
            namespace = validate_namespace(options["namespace"])
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        scope = in_namespace(namespace) if namespace else nullcontext()
        try:
            with scope, redis_budget():
                self.run(alias, options)
        except REDIS_FAILURES as exc:
            raise redis_failure(alias, exc) from exc

    def run(self, alias: str, options: dict[str, Any]) -> None:
        raise NotImplementedError

    def check_alias(self, alias: str) -> None:
        if alias not in settings.CACHES:
            raise CommandError(
                f"Unknown cache alias {alias!r}; CACHES has: {', '.join(sorted(settings.CACHES))}."
            )
        try:
            cache = caches[alias]
        except InvalidCacheBackendError as exc:
            raise CommandError(f"Cache {alias!r} cannot be loaded: {exc}") from exc
        kind = backend_kind(cache)
        if kind is None:
            raise CommandError(
                f"Cache {alias!r} uses {type(cache).__module__}.{type(cache).__qualname__}, which "
                f"django-tagcache does not support; use one of: {', '.join(SUPPORTED)}."
            )
        if kind == "locmem" and self.needs_redis:
            raise CommandError(
                f"Cache {alias!r} is LocMemCache, served by django-tagcache's in-process store, whose data "
                f"lives inside each process: {self.__module__.rsplit('.', 1)[-1]} reads Redis and has "
                "nothing to read here. Run it against a Redis cache alias (--cache)."
            )

    def store(self, alias: str) -> TagStore:
        return get_store(alias)

    def emit(self, options: dict[str, Any], data: dict[str, Any], lines: list[str]) -> None:
        """Print ``data`` as JSON with ``--json``, else the human-readable ``lines``."""
        if options.get("json"):
            self.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            for line in lines:
                self.stdout.write(line)
