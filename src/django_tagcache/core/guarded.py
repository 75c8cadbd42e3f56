"""``GuardedCluster``: redis-py's ``RedisCluster`` with the errors django-redis handles.

redis-py raises ``RedisClusterException`` (no connection error) when no node can serve a
command, and django-redis' clients only turn connection errors, timeouts and error replies into
their ``ConnectionInterrupted``. This subclass raises :class:`ClusterUnreachable`, a redis-py
``ConnectionError``, instead, from commands and pipelines, when the exception says that no node
could serve (a command naming several slots stays a ``RedisClusterException``: it is a bug);
and it gives django-redis' ``ConnectionFactory.disconnect()`` the ``connection_pool.disconnect()``
it calls, closing every node's connections.
"""

from __future__ import annotations

from typing import Any

from redis.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, SlotNotCoveredError
from redis.exceptions import TimeoutError as RedisTimeoutError


class ClusterUnreachable(RedisConnectionError):
    """The cluster cannot be reached, or cannot route a command right now (redis-py's
    ``RedisClusterException``, the ``__cause__``), raised as the connection error it is."""


def unreachable(exc: RedisClusterException) -> bool:
    """Whether a ``RedisClusterException`` says that no node could serve, rather than that the
    command was wrong (several slots in one command, say: a programming error, left as it is)."""
    return (
        isinstance(exc, SlotNotCoveredError)
        or "cannot be connected" in str(exc)
        or isinstance(exc.__cause__, (RedisConnectionError, RedisTimeoutError, OSError))
    )


class _Pipeline:
    """A ``ClusterPipeline`` whose ``execute()`` raises :class:`ClusterUnreachable` when no node can serve."""

    def __init__(self, pipeline: ClusterPipeline) -> None:
        self._pipeline = pipeline

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def __enter__(self) -> _Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pipeline.reset()  # type: ignore[no-untyped-call]

    def __len__(self) -> int:
        return len(self._pipeline)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        try:
            return self._pipeline.execute(raise_on_error)
        except RedisClusterException as exc:
            if unreachable(exc):
                raise ClusterUnreachable(str(exc)) from exc
            raise


class GuardedCluster(RedisCluster):
    """``RedisCluster`` whose commands raise :class:`ClusterUnreachable` when no node can serve them."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            if unreachable(exc):
                raise ClusterUnreachable(str(exc)) from exc
            raise

    @property
    def connection_pool(self) -> _AllNodes:
        return _AllNodes(self)

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        """KEYS on every primary (redis-py would ask one node and miss the others' keys). Prefer SCAN."""
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return super().keys(pattern, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        return _Pipeline(super().pipeline(transaction, shard_hint))  # type: ignore[no-untyped-call]


class _AllNodes:
    """The ``connection_pool`` of a cluster, for django-redis: ``disconnect()`` closes every node's."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster

    def disconnect(self) -> None:
        self._cluster.disconnect_connection_pools()  # type: ignore[no-untyped-call]
