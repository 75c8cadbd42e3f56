"""The README example, run against a real Redis.

Redis comes from REDIS_URL if set, else from 127.0.0.1:6379 (database 15) if a server answers there,
else from a throwaway redis-server started for this run and stopped when it ends, Ctrl-C included.
Run it with ./scripts/demo, which prepares the virtualenv first.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import redis

# tests/servers.py lives in the repository, not in the installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import RedisServer

if TYPE_CHECKING:
    from collections.abc import Iterator

LOCAL_URL = "redis://127.0.0.1:6379/15"


def local_redis_answers() -> bool:
    client = redis.Redis.from_url(LOCAL_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def configure_django(url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django_tagcache"],
        CACHES={"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url}},
        TAGCACHE={"CACHE": "default"},
    )
    django.setup()


def show(call: str, result: Any, meaning: str) -> None:
    print(f">>> {call}")
    print(f"{result!r}    # {meaning}\n")


def run_example() -> bool:
    """The README example; returns whether every step gave the expected result."""
    from django_tagcache import invalidate_tags, tagcache

    key, value = "product:42:card", "<div>Blue mug</div>"
    print(f'>>> tagcache.set("{key}", "{value}", timeout=600, tags=["category:7", "product:42"])\n')
    tagcache.set(key, value, timeout=600, tags=["category:7", "product:42"])

    hit = tagcache.get(key)
    show(f'tagcache.get("{key}")', hit, "a hit: the value")

    removed = invalidate_tags("category:7")
    show('invalidate_tags("category:7")', removed, "entries removed")

    miss = tagcache.get(key)
    show(f'tagcache.get("{key}")', miss, "a miss: the tag's entries are gone")

    return hit == value and removed == 1 and miss is None


def stop_on_sigterm(signum: int, frame: object) -> NoReturn:
    # Turn SIGTERM into SystemExit so redis_url() still stops a server it started.
    raise SystemExit(128 + signum)


@contextmanager
def redis_url() -> Iterator[str]:
    """The URL to use; a server started for this run is stopped when the block exits."""
    if url := os.environ.get("REDIS_URL"):
        print(f"Redis: {url} (from REDIS_URL)\n")
        yield url
    elif local_redis_answers():
        print(f"Redis: {LOCAL_URL} (the server on 127.0.0.1:6379, database 15)\n")
        yield LOCAL_URL
    else:
        server = RedisServer.start()
        try:
            print(f"Redis: {server.url} (started for this run; stopped when it ends)\n")
            yield server.url
        finally:
            server.stop()


def main() -> int:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    with redis_url() as url:
        configure_django(url)
        ok = run_example()
    if not ok:
        print("Unexpected result: see the values above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
