"""Fixtures of the fault suite: a Redis of the test's own, reachable directly or through a proxy."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import pytest
import redis

from django_tagcache import TagCache
from tests.aio import AsyncAPI
from tests.proxy import Proxy
from tests.servers import RedisServer, find_redis_server, server_version

# Short timeouts: a hung Redis must cost a request milliseconds, not the default of forever.
TIMEOUTS = {"SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
RESILIENCE = {
    "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "BUDGET": 0.3},
    "CIRCUIT_BREAKER": {"FAILURES": 3, "RESET_TIMEOUT": 0.3},
}


@dataclass
class Faulty:
    """The test's own Redis, behind a proxy, used by the default tag cache."""

    server: RedisServer
    proxy: Proxy
    api: str = "sync"  # "async": tc is the asyncio API behind the blocking names (tests/aio.py)
    adapter: AsyncAPI | None = None

    @property
    def tc(self) -> TagCache:
        if self.api == "sync":
            return TagCache()
        if self.adapter is None:
            self.adapter = AsyncAPI(TagCache())
        return cast("TagCache", self.adapter)

    def admin(self) -> redis.Redis:
        """A client that talks to the server directly, around the proxy."""
        return self.server.client()

    def stop(self) -> None:
        self.server.stop()

    @contextmanager
    def hung(self) -> Iterator[None]:
        """The server stopped by SIGSTOP for the block: connections open, nothing answers."""
        self.server.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.server.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.server = RedisServer.start(
            binary=self.server.binary, port=self.server.port, extra_args=self.server.extra_args
        )


@pytest.fixture
def faulty(settings: Any, api: str) -> Iterator[Faulty]:
    binary = find_redis_server()
    # DEBUG SLEEP stands for a server stuck in a long command; Redis 7 only allows it when asked.
    extra = ("--enable-debug-command", "local") if server_version(binary) >= (7,) else ()
    server = RedisServer.start(binary=binary, extra_args=extra)
    proxy = Proxy(server.port)
    settings.CACHES = {
        **settings.CACHES,
        "faulty": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{proxy.port}/0",
            "OPTIONS": TIMEOUTS,
        },
    }
    settings.TAGCACHE = {"CACHE": "faulty", **RESILIENCE, **getattr(settings, "FAULTY_EXTRA", {})}
    faults = Faulty(server, proxy, api)
    try:
        yield faults
    finally:
        if faults.adapter is not None:
            faults.adapter.close()
        proxy.close()
        faults.server.stop()  # the one running now: restart() replaces it
