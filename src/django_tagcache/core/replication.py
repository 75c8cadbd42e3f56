"""Invalidations acknowledged by replicas: what keeps a Sentinel failover from undoing one.

Redis replicates asynchronously. A primary that dies right after an invalidation may leave a
replica, promoted by Sentinel, that never saw it: the old generation is back, and with it the
entries the invalidation deleted. With ``INVALIDATION_REPLICAS`` set, an invalidation runs on
one connection and ends with ``WAIT``: it returns only once that many replicas hold it, and
raises (like an unreachable Redis: the caller or the outbox retries) when they do not within
``INVALIDATION_REPLICA_TIMEOUT``. No Django in here.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError


class ReplicasBehind(RedisConnectionError):
    """Too few replicas acknowledged an invalidation in time: it may not survive a failover."""


def pinned(client: Any) -> Any:
    """A client on one connection of ``client``'s pool (blocking or asyncio, like ``client``).

    ``WAIT`` covers the writes of its own connection only, so the whole invalidation (the script
    and any drain calls) runs on that connection, and ``WAIT`` follows there. Give it back with
    :func:`release`.
    """
    return type(client)(connection_pool=client.connection_pool, single_connection_client=True)


def release(single: Any) -> Any:
    """Give the connection of a :func:`pinned` client back (an awaitable for an asyncio one)."""
    close = getattr(single, "aclose", None) or single.close
    return close()


def require(acked: int, wanted: int, tags: int, timeout_ms: int) -> None:
    """Raise :class:`ReplicasBehind` unless ``wanted`` replicas acknowledged the invalidation."""
    if acked < wanted:
        raise ReplicasBehind(
            f"{acked} of {wanted} replica(s) acknowledged the invalidation of {tags} tag(s) within "
            f"{timeout_ms} ms; a failover now could undo it."
        )
