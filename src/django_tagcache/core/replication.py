"""Invalidations acknowledged by replicas: what keeps a Sentinel failover from undoing one.

Redis replicates asynchronously. A primary that dies right after an invalidation may leave a
replica, promoted by Sentinel, that never saw it: the old generation is back, and with it the
entries the invalidation deleted. With ``INVALIDATION_REPLICAS`` set, an invalidation runs on
one connection and ends with ``WAIT``: it returns only once that many replicas hold it, and
raises (like an unreachable Redis: the caller or the outbox retries) when they do not within
``INVALIDATION_REPLICA_TIMEOUT``. No Django in here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from .scripts import ScriptRunner


class ReplicasBehind(RedisConnectionError):
    """Too few replicas acknowledged an invalidation in time: it may not survive a failover."""


class _OneConnection(ScriptRunner):
    """Runs every call on its client's one connection: a pipeline would take another one."""

    def pipelined(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        return [self(name, keys, args) for keys, args in calls]


@contextmanager
def one_connection(client: redis.Redis, scripts: ScriptRunner) -> Iterator[tuple[redis.Redis, ScriptRunner]]:
    """A client and a script runner pinned to one connection of ``client``'s pool, for the block.

    ``WAIT`` covers the writes of its own connection only, so the whole invalidation (the script
    and any drain calls) runs on that connection, and ``WAIT`` follows there.
    """
    single = redis.Redis(connection_pool=client.connection_pool, single_connection_client=True)
    try:
        yield single, _OneConnection(single, scripts.mode)
    finally:
        single.close()


def require(acked: int, wanted: int, tags: int, timeout_ms: int) -> None:
    """Raise :class:`ReplicasBehind` unless ``wanted`` replicas acknowledged the invalidation."""
    if acked < wanted:
        raise ReplicasBehind(
            f"{acked} of {wanted} replica(s) acknowledged the invalidation of {tags} tag(s) within "
            f"{timeout_ms} ms; a failover now could undo it."
        )
