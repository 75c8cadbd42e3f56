"""``redis.asyncio`` clients that reach the servers of a blocking redis-py client, one per event loop.

An asyncio connection belongs to the loop that opened it, so each loop gets clients of its own
(:class:`PerLoop`), built from the settings of the blocking client a cache alias already has
(:func:`asyncio_twin`): same servers, database, credentials, timeouts, TLS. When a loop shuts
down its async generators (``asyncio.run()`` and asgiref do, before closing it), its clients'
connections are closed; a loop found closed is forgotten. No Django in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.sentinel
from redis.cluster import RedisCluster

from .aio_pool import BoundedPool, BoundedSentinelPool

T = TypeVar("T")

#: Attribute of a custom blocking connection class naming the asyncio class to use in its place.
ASYNCIO_CLASS = "asyncio_connection_class"


def asyncio_connection_class(cls: type) -> type:
    """The ``redis.asyncio`` connection class matching a blocking one."""
    named = getattr(cls, ASYNCIO_CLASS, None)
    if named is not None:
        return named  # type: ignore[no-any-return]
    aio = redis.asyncio.connection
    if issubclass(cls, redis.sentinel.SentinelManagedConnection):
        return redis.asyncio.sentinel.SentinelManagedConnection
    if issubclass(cls, redis.SSLConnection):
        return aio.SSLConnection
    if issubclass(cls, redis.UnixDomainSocketConnection):
        return aio.UnixDomainSocketConnection
    return aio.Connection


def _accepted(target: Callable[..., Any] | type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``target`` (a class or function, with its bases) takes."""
    names: set[str] = set()
    classes = target.__mro__ if isinstance(target, type) else ()
    for item in classes or (target,):
        init = item.__init__ if isinstance(item, type) else item  # type: ignore[misc]
        try:
            names.update(inspect.signature(init).parameters)
        except (TypeError, ValueError):
            continue
    return {key: value for key, value in kwargs.items() if key in names}


def _retry(sync_retry: Any) -> Any:
    """The connection-level retry of the blocking client, for the asyncio one (same backoff, count)."""
    if sync_retry is None or not hasattr(sync_retry, "_backoff"):
        return None
    return redis.asyncio.retry.Retry(sync_retry._backoff, sync_retry._retries)


# The settings a connection carries over; the rest (parser classes, hooks, maintenance
# handlers) are the blocking client's own machinery, which the asyncio one builds for itself.
_SETTINGS = frozenset(
    [
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "credential_provider",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "retry_on_timeout",
        "retry_on_error",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "health_check_interval",
        "client_name",
        "lib_name",
        "lib_version",
        "protocol",
        "socket_read_size",
        "retry",
    ]
)


def _settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in kwargs.items() if k in _SETTINGS or k.startswith("ssl_")}
    if "retry" in kept:
        kept["retry"] = _retry(kept["retry"])
    return kept


def _connection_kwargs(pool: Any, connection_class: type) -> dict[str, Any]:
    kwargs = dict(getattr(pool, "connection_kwargs", None) or getattr(pool, "_connection_kwargs", {}))
    return _accepted(connection_class, _settings(kwargs))


def asyncio_twin(client: Any, *, max_connections: int = 4, wait_timeout: float = 1.0) -> Any:
    """A ``redis.asyncio`` client for the servers ``client`` (blocking redis-py) talks to.

    A standalone server gives a ``redis.asyncio.Redis`` on a pool of the matching connection
    class, Sentinel a client of the master through ``redis.asyncio.sentinel``, a cluster a
    ``redis.asyncio.cluster.RedisCluster`` seeded with the same startup nodes.

    Standalone and Sentinel clients hold at most ``max_connections`` connections; a call that
    finds them all busy waits up to ``wait_timeout`` seconds for one (see :mod:`.aio_pool`).
    A cluster client keeps redis-py's own per-node connections.
    """
    if isinstance(client, RedisCluster):
        return _cluster_twin(client)
    pool = client.connection_pool
    bounds = {"max_connections": max_connections, "wait_timeout": wait_timeout}
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        return _sentinel_twin(pool, bounds)
    connection_class = asyncio_connection_class(pool.connection_class)
    kwargs = _connection_kwargs(pool, connection_class)
    twin_pool = BoundedPool(connection_class=connection_class, **bounds, **kwargs)
    return redis.asyncio.Redis.from_pool(twin_pool)  # owns the pool: aclose() disconnects it


def _sentinel_twin(pool: Any, bounds: dict[str, Any]) -> Any:
    manager = pool.sentinel_manager
    sentinels = [
        (node.connection_pool.connection_kwargs["host"], node.connection_pool.connection_kwargs["port"])
        for node in manager.sentinels
    ]
    connection_class = asyncio_connection_class(pool.connection_class)
    kwargs = _connection_kwargs(pool, connection_class)
    sentinel_kwargs = _accepted(redis.asyncio.connection.Connection, _settings(dict(manager.sentinel_kwargs)))
    aio_manager = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        sentinels, min_other_sentinels=manager.min_other_sentinels, sentinel_kwargs=sentinel_kwargs, **kwargs
    )
    if not pool.is_master:
        return aio_manager.slave_for(pool.service_name, connection_pool_class=BoundedSentinelPool, **bounds)
    return aio_manager.master_for(pool.service_name, connection_pool_class=BoundedSentinelPool, **bounds)


def _cluster_twin(client: Any) -> Any:
    manager = client.nodes_manager
    nodes = [
        redis.asyncio.cluster.ClusterNode(node.host, node.port) for node in manager.startup_nodes.values()
    ]
    connection_class = manager.connection_kwargs.get("connection_class", redis.Connection)
    kwargs = _accepted(
        redis.asyncio.cluster.RedisCluster.__init__, _settings(dict(manager.connection_kwargs))
    )
    kwargs.pop("retry", None)  # the cluster client retries by its own policy
    twin = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **kwargs)
    named = getattr(connection_class, ASYNCIO_CLASS, None)
    if named is not None:  # a custom class (the test suite counts round trips with one)
        twin.nodes_manager.connection_kwargs["connection_class"] = named
    return twin


async def close(client: Any) -> None:
    """Close every connection of an asyncio client (a cluster's on every node, a Sentinel
    client's to the sentinels too)."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return
    await pool.disconnect()
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


class PerLoop(Generic[T]):
    """One value per running event loop, built on first use in that loop.

    When the loop shuts down its async generators, ``closer`` runs on the value, in the loop;
    a value whose loop is closed is dropped. Thread-safe: each thread runs its own loop.
    """

    def __init__(self, build: Callable[[], T], closer: Callable[[T], Any]) -> None:
        self._build = build
        self._closer = closer
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[T, Any]] = (
            weakref.WeakKeyDictionary()
        )
        # Values forgotten by clear() whose loop still runs: kept until it closes them at shutdown.
        self._retired: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        # The loop asked last and its value: most processes run one loop, asked on every call.
        # Its loop by weak reference, as in _values; one tuple, replaced whole (threads share it).
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop] | None, Any] = (None, None)

    def get(self) -> T:
        """The value of the running loop (build it if this loop has none yet)."""
        loop = asyncio.get_running_loop()
        last, value = self._last
        if last is not None and last() is loop:
            return value  # type: ignore[no-any-return]
        found = self._values.get(loop)
        if found is not None:
            self._last = (weakref.ref(loop), found[0])
            return found[0]
        value = self._build()
        watcher = self._watch(value)
        # Started here, so the loop's async-generator hooks know it: asyncio.run() closes it at the end.
        with contextlib.suppress(StopIteration):
            watcher.__anext__().send(None)
        with self._lock:
            for other in [other for other in self._values if other.is_closed()]:
                del self._values[other]
            for other in [other for other in self._retired if other.is_closed()]:
                del self._retired[other]
            self._values[loop] = (value, watcher)
            self._last = (weakref.ref(loop), value)
        return value

    async def _watch(self, value: T) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            result = self._closer(value)
            if inspect.isawaitable(result):
                await result

    def clear(self) -> None:
        """Forget every loop's value; a loop that is not closed yet still closes it at shutdown."""
        with self._lock:
            self._last = (None, None)
            for loop, found in list(self._values.items()):
                if not loop.is_closed():
                    self._retired.setdefault(loop, []).append(found)
            self._values.clear()
