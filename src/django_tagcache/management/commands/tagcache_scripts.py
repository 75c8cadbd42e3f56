"""``manage.py tagcache_scripts``: load the bundled Lua scripts into Redis and verify them."""

from __future__ import annotations

import hashlib
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...core.scripts import SCRIPT_NAMES, function_name, library_name, source
from ..base import EXIT_CHECK_FAILED, TagCacheCommand


def _version(info: dict[str, Any]) -> str:
    # A cluster client answers INFO per node: {node: info}. Report the distinct versions.
    if "redis_version" in info:
        return str(info["redis_version"])
    versions = sorted({str(node["redis_version"]) for node in info.values() if isinstance(node, dict)})
    return ", ".join(versions) or "unknown"


class Command(TagCacheCommand):
    needs_redis = True
    help = (
        "Load the bundled Lua scripts (Redis 7 Functions library, or EVALSHA scripts) and verify that the "
        "server holds them. --check only verifies, and exits with status 4 if any is missing."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--check", action="store_true", help="Verify only; load nothing.")

    def run(self, alias: str, options: dict[str, Any]) -> None:
        store = self.store(alias)
        runner = store.scripts
        mode = runner.mode
        if not options["check"]:
            runner.load()
        loaded = runner.loaded()
        scripts = {
            name: {
                "loaded": loaded.get(name, False),
                "id": function_name(name)
                if mode == "function"
                else hashlib.sha1(source(name).encode(), usedforsecurity=False).hexdigest(),
            }
            for name in SCRIPT_NAMES
        }
        data = {
            "cache": alias,
            "server_version": _version(store.client.info("server")),
            "mode": mode,
            "command": "FCALL" if mode == "function" else "EVALSHA",
            "library": library_name() if mode == "function" else None,
            "scripts": scripts,
            "loaded": not options["check"],
        }
        missing = [name for name, info in scripts.items() if not info["loaded"]]
        path = f"Redis Functions (FCALL), library {library_name()}" if mode == "function" else "EVALSHA"
        lines = [
            f"Cache {alias!r}: Redis {data['server_version']}; scripts run through {path}.",
            *(
                f"  {name:<20} {info['id']}  {'ok' if info['loaded'] else 'MISSING'}"
                for name, info in scripts.items()
            ),
        ]
        self.emit(options, data, lines)
        if missing:
            hint = (
                "run tagcache_scripts without --check to load them" if options["check"] else "loading failed"
            )
            raise CommandError(
                f"Scripts missing on the server: {', '.join(missing)} ({hint}).", returncode=EXIT_CHECK_FAILED
            )
        if not options["json"]:
            self.stdout.write("All scripts loaded." if not options["check"] else "All scripts present.")
