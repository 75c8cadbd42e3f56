"""Redis Cluster for django-redis: a client class built on redis-py's ``RedisCluster``.

::

    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://10.0.0.1:7000,redis://10.0.0.2:7000",  # any nodes; or a list
            "OPTIONS": {"CLIENT_CLASS": "django_tagcache.cluster.RedisClusterClient"},
        }
    }

django-redis' cache API keeps working, and ``django_redis.get_redis_connection(alias)`` returns
the ``RedisCluster``, which is what django-tagcache's store uses. One ``RedisCluster`` serves
each configuration per process: Django builds a cache backend (and so a client) per thread,
and they must not each open connections to every node.

Errors behave as with django-redis' own clients: ``RedisCluster`` connects when it is built and
raises ``RedisClusterException`` (not a connection error) for a cluster it cannot reach, so the
client builds it inside django-redis' error handling and the cluster it returns turns that
exception into :class:`ClusterUnreachable`, a redis-py ``ConnectionError``. With
``IGNORE_EXCEPTIONS`` every call then gives django-redis' "miss" answer; without it, the
``ConnectionError`` is raised.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django_redis.client import DefaultClient
from django_redis.exceptions import ConnectionInterrupted
from redis.cluster import ClusterNode, LoadBalancingStrategy, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core.guarded import ClusterUnreachable, GuardedCluster

__all__ = ["ClusterUnreachable", "GuardedCluster", "RedisClusterClient", "get_cluster"]

# What django-redis turns into ConnectionInterrupted (the same list as its DefaultClient).
_REDIS_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ResponseError,
    socket.timeout,
    RedisClusterException,
)

# OPTIONS of django-redis that map onto RedisCluster keyword arguments.
_OPTION_KWARGS = {
    "USERNAME": "username",
    "PASSWORD": "password",
    "SOCKET_TIMEOUT": "socket_timeout",
    "SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout",
}


# One RedisCluster per configuration and process (see the module docstring); _reset_clusters()
# empties it for tests.
_clusters: dict[tuple[object, ...], RedisCluster] = {}
_clusters_lock = threading.Lock()


def cluster_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """RedisCluster keyword arguments from django-redis OPTIONS."""
    kwargs: dict[str, Any] = {
        **options.get("CONNECTION_POOL_KWARGS", {}),
        **options.get("REDIS_CLIENT_KWARGS", {}),
    }
    for option, name in _OPTION_KWARGS.items():
        if options.get(option) is not None:
            kwargs[name] = options[option]
    read_from_replicas = options.get("READ_FROM_REPLICAS", False)
    if not isinstance(read_from_replicas, bool):
        raise ImproperlyConfigured(
            f"OPTIONS['READ_FROM_REPLICAS'] must be True or False, not {read_from_replicas!r}."
        )
    if read_from_replicas:
        # Round robin over a shard's primary and replicas, as redis-py's old read_from_replicas did.
        kwargs["load_balancing_strategy"] = LoadBalancingStrategy.ROUND_ROBIN
    return kwargs


def startup_nodes(urls: Iterable[str]) -> list[ClusterNode]:
    """The nodes named by LOCATION URLs (redis:// or rediss://, default port 6379)."""
    nodes = []
    for url in urls:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ImproperlyConfigured(
                f"Redis Cluster LOCATION entries must be redis:// or rediss:// URLs, not {url!r}."
            )
        nodes.append(ClusterNode(parts.hostname, parts.port or 6379))  # type: ignore[no-untyped-call]
    return nodes


def _cluster_key(urls: list[str], kwargs: dict[str, Any]) -> tuple[object, ...]:
    return (tuple(urls), tuple(sorted((name, repr(value)) for name, value in kwargs.items())))


def existing_cluster(urls: list[str], options: dict[str, Any]) -> RedisCluster | None:
    """The process' RedisCluster for these startup nodes and OPTIONS, if built already."""
    return _clusters.get(_cluster_key(urls, cluster_kwargs(options)))


def get_cluster(urls: list[str], options: dict[str, Any]) -> RedisCluster:
    """The process' RedisCluster for these startup nodes and OPTIONS, created on first use.

    Credentials and TLS come from the first URL (``rediss://user:pass@host:port``) or OPTIONS.
    Raises :class:`ClusterUnreachable` if no startup node can be reached (the next call tries again).
    """
    kwargs = cluster_kwargs(options)
    key = _cluster_key(urls, kwargs)
    cluster = _clusters.get(key)
    if cluster is None:
        with _clusters_lock:
            cluster = _clusters.get(key)
            if cluster is None:
                first, *others = urls
                startup_nodes([first])  # validate it like the others
                try:
                    cluster = GuardedCluster(url=first.strip(), startup_nodes=startup_nodes(others), **kwargs)
                except RedisClusterException as exc:
                    raise ClusterUnreachable(str(exc)) from exc
                _clusters[key] = cluster
    return cluster


def _reset_clusters() -> None:
    """Close and forget every RedisCluster (tests)."""
    with _clusters_lock:
        for cluster in _clusters.values():
            cluster.close()
        _clusters.clear()


class RedisClusterClient(DefaultClient):  # type: ignore[misc]  # django-redis is untyped
    """A django-redis client for Redis Cluster: set ``OPTIONS["CLIENT_CLASS"]`` to this class.

    ``LOCATION`` names one or more nodes (a comma-separated string or a list of URLs); the
    rest of the cluster is discovered from them. ``OPTIONS["READ_FROM_REPLICAS"] = True`` lets
    django-redis' own reads go to replicas too (they may lag); django-tagcache always reads
    from primaries.
    """

    def __init__(self, server: str | list[str], params: dict[str, Any], backend: Any) -> None:
        super().__init__(server, params, backend)
        self._urls = [str(url) for url in self._server]
        startup_nodes(self._urls)  # a bad LOCATION fails here, not on the first cache call
        cluster_kwargs(self._options)

    def get_client(self, write: bool = True, tried: list[int] | None = None) -> RedisCluster:
        """The RedisCluster; it routes each command itself, so ``write`` changes nothing.

        Raises django-redis' ``ConnectionInterrupted`` (caused by :class:`ClusterUnreachable`) if
        the cluster cannot be reached: django-redis' cache methods call this outside their own
        error handling, and its ``IGNORE_EXCEPTIONS`` acts on that exception.
        """
        try:
            return get_cluster(self._urls, self._options)
        except ClusterUnreachable as exc:
            raise ConnectionInterrupted(connection=None) from exc

    def get_client_with_index(
        self, write: bool = True, tried: list[int] | None = None
    ) -> tuple[RedisCluster, int]:
        return self.get_client(write), 0

    def connect(self, index: int = 0) -> RedisCluster:
        return self.get_client()

    def disconnect(self, index: int = 0, client: Any = None) -> None:
        """Close the connections of ``client`` (the shared cluster), if given; they reopen on next use."""
        if client is not None:
            self.connection_factory.disconnect(client)

    def do_close_clients(self) -> None:
        """``CLOSE_CONNECTION``: close the shared cluster's connections; each reopens on its next use.

        As with django-redis' own clients, whose connection pools are shared by every backend of
        the process too, this also closes connections another thread is using at that moment.
        """
        cluster = existing_cluster(self._urls, self._options)
        if cluster is not None:
            self.disconnect(client=cluster)

    def get_many(
        self, keys: Collection[str], version: int | None = None, client: Any = None
    ) -> dict[str, Any]:
        """Many keys at once: one MGET per slot, pipelined per node (MGET cannot cross slots)."""
        if client is None:
            client = self.get_client(write=False)
        if not keys:
            return {}
        map_keys = {self.make_key(key, version=version): key for key in keys}
        try:
            values = client.mget_nonatomic(list(map_keys))
        except _REDIS_ERRORS as exc:
            raise ConnectionInterrupted(connection=client) from exc
        return {
            map_keys[key]: self.decode(value)
            for key, value in zip(map_keys, values, strict=True)
            if value is not None
        }

    def keys(self, search: str, version: int | None = None, client: Any = None) -> list[Any]:
        """Keys matching a pattern on every primary (redis-py would ask one node). Prefer iter_keys."""
        if client is None:
            client = self.get_client(write=False)
        pattern = self.make_pattern(search, version=version)
        try:
            found = client.keys(pattern, target_nodes=RedisCluster.PRIMARIES)
        except _REDIS_ERRORS as exc:
            raise ConnectionInterrupted(connection=client) from exc
        return [self.reverse_key(key.decode() if isinstance(key, bytes) else key) for key in found]
