"""The asyncio transport: the store's steps (steps.py, cluster_store.py) on ``redis.asyncio``.

Nothing here decides anything: every step, script plan and reply is the one the blocking
store runs (see :mod:`.bridge`); this module only awaits the calls. A hit is one GET. No Django.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .bridge import awaiting
from .cluster_scripts import ClusterScriptSteps
from .cluster_store import ClusterSteps, live
from .scripts import ScriptSteps
from .steps import TagSteps

if TYPE_CHECKING:
    from .scripts import Mode
    from .timebudget import Budget

T = TypeVar("T")


class AsyncScriptRunner(ScriptSteps):
    """:class:`~.scripts.ScriptSteps` on a ``redis.asyncio`` client."""

    async def mode(self) -> Literal["eval", "function"]:
        """The path in use; "auto" asks the server its version once."""
        return await self._resolve_mode()

    __call__ = awaiting(ScriptSteps._run)
    pipelined = awaiting(ScriptSteps._pipelined)
    load = awaiting(ScriptSteps._load)
    loaded = awaiting(ScriptSteps._loaded)


class AsyncClusterScriptRunner(ClusterScriptSteps, AsyncScriptRunner):
    """:class:`~.cluster_scripts.ClusterScriptSteps` on a ``redis.asyncio.cluster.RedisCluster``."""

    execute = awaiting(ClusterScriptSteps._execute)
    send = awaiting(ClusterScriptSteps._send)
    run = awaiting(ClusterScriptSteps._run_all)
    run_commands = awaiting(ClusterScriptSteps._run_commands)


class AsyncTagStore(TagSteps):
    """The tagged-entry store on ``redis.asyncio``: the methods of :class:`~.store.TagStore`, awaited."""

    #: The cache alias, and its blocking store (which keys the near cache): set by the factory.
    alias: str = ""
    blocking: Any = None

    def _runner(self, client: Any) -> AsyncScriptRunner:
        return AsyncScriptRunner(client)

    #: One Redis call, awaited under the time budget, the circuit breaker and the retry policy.
    _acall = TagSteps._guarded
    _io = TagSteps._guarded

    def _sleep(self, budget: Budget) -> Callable[[float], Awaitable[None]]:
        return budget.asleep

    #: The client's pool, when a GET may be sent on a connection of it directly (see :meth:`get`);
    #: False when it may not, None until asked.
    _get_pool: Any = None

    def get(self, entry: str) -> Awaitable[bytes | None]:
        """The raw payload of an entry, or None: one GET, under the guard of every call.

        On a plain pooled client the GET is sent on a connection of the pool and its reply read
        as redis-py's client does it (the connection's own retries, a disconnect on any error or
        cancellation, the connection handed back), without the client's command dispatch and
        its telemetry, which cost a hit more than this package's own work. The guarded call's
        coroutine is returned, not awaited in one more: a coroutine frame less on every hit.
        """
        pool = self._get_pool
        if pool is None:
            pool = self._get_pool = _plain_pool(self.client)
        if pool is False:
            return self._acall(partial(self.client.get, entry))
        return self._acall(partial(_get, pool, entry))

    async def get_many(self, entries: Sequence[str]) -> list[bytes | None]:
        """The raw payloads of several entries, in order: one MGET."""
        return list(await self._acall(partial(self.client.mget, list(entries))))

    async def get_with_ttl(self, entry: str) -> tuple[bytes | None, int]:
        """The raw payload of an entry and its PTTL in ms (-1: no expiry, -2: absent): one round trip."""

        def read() -> Awaitable[list[Any]]:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(entry)
            pipe.pttl(entry)
            return pipe.execute()  # type: ignore[no-any-return]

        payload, ttl = await self._acall(read)
        return payload, int(ttl)

    write = awaiting(TagSteps._write)
    prepare_miss = awaiting(TagSteps._prepare_miss)
    finish_miss = awaiting(TagSteps._finish_miss)
    lock = awaiting(TagSteps._lock)
    unlock = awaiting(TagSteps._unlock)
    generations = awaiting(TagSteps._generations)
    vouching_generations = awaiting(TagSteps._vouching_generations)
    delete = awaiting(TagSteps._delete)
    invalidate = awaiting(TagSteps._invalidate)
    drain = awaiting(TagSteps._drain)
    mark = awaiting(TagSteps._mark)


def _plain_pool(client: Any) -> Any:
    """The pool of ``client`` if a GET sent on one of its connections is what the client would
    send and return (no single shared connection, no reply callback for GET); else False."""
    pool = getattr(client, "connection_pool", None)
    if (
        pool is None
        or getattr(client, "single_connection_client", True)
        or "GET" in getattr(client, "response_callbacks", {"GET": None})
    ):
        return False
    return pool


async def _get(pool: Any, entry: str) -> Any:
    """One GET of ``entry`` on a connection of ``pool``, as ``redis.asyncio.Redis`` sends it."""
    connection = await pool.get_connection()
    try:
        encoder = connection.encoder
        key = entry.encode(encoder.encoding, encoder.encoding_errors)
        packed = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key)

        async def send() -> Any:
            # Both disconnect the connection on any error or cancellation: no reply is left
            # in flight for the next user of the connection.
            await connection.send_packed_command(packed)
            return await connection.read_response()

        return await connection.retry.call_with_retry(send, lambda error: connection.disconnect())
    finally:
        await pool.release(connection)  # which reconnects one a server asked to move


class AsyncClusterTagStore(ClusterSteps, AsyncTagStore):
    """:class:`~.cluster_store.ClusterSteps` on ``redis.asyncio.cluster.RedisCluster``."""

    runner: AsyncClusterScriptRunner

    def _cluster_runner(self, client: Any, mode: Mode) -> AsyncClusterScriptRunner:
        return AsyncClusterScriptRunner(client, mode)

    async def get(self, entry: str) -> bytes | None:
        """The raw payload of an entry, or None: one GET, on the primary (a tombstone reads as None)."""
        return live(await self._acall(lambda: self.runner.execute(self.runner.slot(entry), "GET", entry)))

    async def get_many(self, entries: Sequence[str]) -> list[bytes | None]:
        """:meth:`get` of each entry, all sent at once (entries of several slots: one GET each)."""
        return list(await asyncio.gather(*(self.get(entry) for entry in entries)))

    async def get_with_ttl(self, entry: str) -> tuple[bytes | None, int]:
        """:meth:`get` and the entry's PTTL, in one round trip to its primary."""
        payload, ttl = await super().get_with_ttl(entry)
        return (None, -2) if live(payload) is None else (payload, ttl)
