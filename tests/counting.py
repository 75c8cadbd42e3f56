"""A real redis-py connection that counts what it sends: commands and round trips.

A round trip is one write of packed commands to the socket (a pipeline is one); counting is
per process and only while a :func:`count` block is open in the current thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio


@dataclass
class Tally:
    round_trips: int = 0
    commands: list[str] = field(default_factory=list)
    #: The commands among ``commands`` sent by the blocking client (redis.Connection).
    blocking: list[str] = field(default_factory=list)


_local = threading.local()


def _tally() -> Tally | None:
    return getattr(_local, "tally", None)


class CountingConnection(redis.Connection):
    def send_command(self, *args: Any, **kwargs: Any) -> None:
        tally = _tally()
        if tally is not None:
            name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            tally.commands.append(name.split()[0].upper())
            tally.blocking.append(tally.commands[-1])
        super().send_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def pack_commands(self, commands: Any) -> list[bytes | memoryview]:
        tally = _tally()
        if tally is not None:
            names = [str(cmd[0]).upper() for cmd in commands]
            tally.commands += names
            tally.blocking += names
        packed: list[bytes | memoryview] = super().pack_commands(commands)  # type: ignore[no-untyped-call]
        return packed

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        tally = _tally()
        if tally is not None:
            tally.round_trips += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class AsyncCountingConnection(redis.asyncio.Connection):
    """:class:`CountingConnection` for ``redis.asyncio``: the same tally, the same rules."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        tally = _tally()
        if tally is not None:
            tally.round_trips += 1
            tally.commands += _names(command)
        await super().send_packed_command(command, check_health)


def _names(packed: Any) -> list[str]:
    """The command names in packed RESP: arrays of bulk strings, one per command."""
    parts = [packed] if isinstance(packed, (bytes, bytearray, memoryview)) else packed
    data = b"".join(bytes(part) for part in parts)
    names, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        count, pos = int(data[pos + 1 : end]), end + 2
        for arg in range(count):
            end = data.index(b"\r\n", pos)
            length = int(data[pos + 1 : end])
            if arg == 0:
                names.append(data[end + 2 : end + 2 + length].decode().split()[0].upper())
            pos = end + 2 + length + 2
    return names


# The asyncio twin django-tagcache builds for the async API uses this class in its place.
CountingConnection.asyncio_connection_class = AsyncCountingConnection  # type: ignore[attr-defined]


@contextmanager
def count() -> Iterator[Tally]:
    """Count the commands and round trips this thread sends inside the block."""
    tally = Tally()
    _local.tally = tally
    try:
        yield tally
    finally:
        _local.tally = None


def server_calls(client: redis.Redis) -> dict[str, int]:
    """Per-command call counts from INFO commandstats (e.g. {"get": 12, "fcall": 3})."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
