"""Invalidations acknowledged by replicas: what keeps a Sentinel failover from undoing one.

Redis replicates asynchronously. A primary that dies right after an invalidation may leave a
replica, promoted by Sentinel, that never saw it: the old generation is back, and with it the
entries the invalidation deleted. With ``INVALIDATION_REPLICAS`` set, an invalidation runs on
one connection and ends with ``WAIT``: it returns only once that many replicas hold it, and
raises (like an unreachable Redis: the caller or the outbox retries) when they do not within
``INVALIDATION_REPLICA_TIMEOUT``. No Django in here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from .scripts import ScriptRunner

if TYPE_CHECKING:
    from .store import TagStore


class ReplicasBehind(RedisConnectionError):
    """Too few replicas acknowledged an invalidation in time: it may not survive a failover."""


class _OneConnection(ScriptRunner):
    """Runs every call on its client's one connection: a pipeline would take another one."""

    def pipelined(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        return [self(name, keys, args) for keys, args in calls]


def invalidate_acknowledged(store: TagStore, tags: Sequence[str]) -> int:
    """:meth:`TagStore.invalidate`, returning once ``invalidation_replicas`` replicas hold it.

    ``WAIT`` covers the writes of its own connection only, so the whole invalidation (the script
    and any drain calls) runs on one connection taken from the pool, and ``WAIT`` follows there.
    """
    wanted = store.options.invalidation_replicas
    single = redis.Redis(connection_pool=store.client.connection_pool, single_connection_client=True)
    try:
        pinned = copy.copy(store)
        pinned.client = single
        pinned.scripts = _OneConnection(single, store.scripts.mode)
        removed = pinned.invalidate_here(tags)
        acked = int(store._call(lambda: single.wait(wanted, store.options.replica_timeout_ms)))
    finally:
        single.close()
    if acked < wanted:
        raise ReplicasBehind(
            f"{acked} of {wanted} replica(s) acknowledged the invalidation of {len(tags)} tag(s) within "
            f"{store.options.replica_timeout_ms} ms; a failover now could undo it."
        )
    return removed
