"""Running the bundled scripts on a Redis Cluster: each on the primary of its keys' slot.

Every command names its primary explicitly: redis-py would otherwise ask a node
``COMMAND GETKEYS`` before every FCALL or pipelined EVALSHA, and could send reads to a replica
that has not seen an invalidation yet. Commands for several slots are pipelined.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.exceptions import NoScriptError, SlotNotCoveredError

from .bridge import blocking, settle
from .scripts import (
    SCRIPT_NAMES,
    ScriptRunner,
    ScriptSteps,
    function_name,
    is_missing_function,
    library_name,
    source,
)

if TYPE_CHECKING:
    from .scripts import Mode


class ScriptCall(NamedTuple):
    """A script call of a pipeline, spelled as FCALL or EVALSHA when it is sent (the mode known)."""

    name: str
    keys: Sequence[str]
    args: Sequence[Any]


class ClusterScriptSteps(ScriptSteps):
    """Runs the bundled scripts on the primaries of a cluster; a node that lacks them gets them.

    Written once for both transports (see :mod:`.bridge`): :class:`ClusterScriptRunner` on a
    blocking ``RedisCluster``, :class:`~.aio_store.AsyncClusterScriptRunner` on an asyncio one.
    """

    def __init__(self, client: Any, mode: Mode = "auto", *, pipelines: bool = True) -> None:
        super().__init__(client, mode, pipelines=pipelines)
        self.cluster: Any = client  # redis-py's cluster API is untyped

    def slot(self, key: str) -> int:
        return int(self.cluster.keyslot(key))

    async def _primary(self, slot: int) -> Any:
        if getattr(self.cluster, "_initialize", False):  # an asyncio cluster reads its slots on first use
            await self.cluster.initialize()
        try:
            return self.cluster.nodes_manager.get_node_from_slot(slot)
        except SlotNotCoveredError:
            # The slot map is stale (a failover or resharding went on): reread it before the retry.
            await settle(self.cluster.nodes_manager.initialize())
            raise

    async def _execute(self, slot: int, *command: Any) -> Any:
        """Run one command on the primary of ``slot`` (redis-py still follows MOVED and ASK)."""
        return await settle(self.cluster.execute_command(*command, target_nodes=await self._primary(slot)))

    async def _send(self, commands: Sequence[tuple[int, Sequence[Any]]]) -> list[Any]:
        """Run ``(slot, command)`` pairs on the primary of each slot, pipelined; errors are returned."""
        await self._resolve_mode()
        pipe = self.cluster.pipeline(transaction=False)
        for slot, command in commands:
            if isinstance(command, ScriptCall):
                command = self.command(*command)
            pipe.execute_command(*command, target_nodes=await self._primary(slot))
        return list(await settle(pipe.execute(raise_on_error=False)))

    def command(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        if self._mode == "function":
            return ["FCALL", function_name(name), len(keys), *keys, *args]
        sha = hashlib.sha1(source(name).encode(), usedforsecurity=False).hexdigest()
        return ["EVALSHA", sha, len(keys), *keys, *args]

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[int, ScriptCall]:
        """A ``(slot, command)`` pair running a bundled script: keys[0] names the slot."""
        return self.slot(keys[0]), ScriptCall(name, keys, args)

    async def _run_all(self, calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run ``(script, keys, args)`` calls, each on the primary of its keys' slot, pipelined."""
        return await self._run_commands([self.script(name, keys, args) for name, keys, args in calls])

    async def _run_commands(self, commands: Sequence[tuple[int, Sequence[Any]]]) -> list[Any]:
        """Run ``(slot, command)`` pairs pipelined; scripts among them are loaded where missing.

        A primary without the scripts (new, failed over, flushed) makes every primary load
        them, and the calls it refused run again; nothing ran for those. Raises the first error.
        """
        results = await self._send(commands)
        missing = [i for i, result in enumerate(results) if _is_missing_script(result)]
        if missing:
            await self._load()
            for i, result in zip(missing, await self._send([commands[i] for i in missing]), strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return (await self._run_all([(name, keys, args)]))[0]

    async def _loaded(self) -> dict[str, bool]:
        """Whether every primary holds each script right now."""
        if await self._resolve_mode() == "eval":
            return await super()._loaded()  # SCRIPT EXISTS goes to every primary; redis-py ANDs the answers
        # FUNCTION LIST goes to every primary: {node: libraries} (just the libraries with one node).
        answers = await settle(self.cluster.function_list(library=library_name()))
        present = all(answers.values()) if isinstance(answers, dict) else bool(answers)
        return dict.fromkeys(SCRIPT_NAMES, present)


class ClusterScriptRunner(ClusterScriptSteps, ScriptRunner):
    """:class:`ClusterScriptSteps` on a blocking ``RedisCluster``."""

    execute = blocking(ClusterScriptSteps._execute)
    send = blocking(ClusterScriptSteps._send)
    run = blocking(ClusterScriptSteps._run_all)
    run_commands = blocking(ClusterScriptSteps._run_commands)


def _is_missing_script(result: Any) -> bool:
    return isinstance(result, NoScriptError) or is_missing_function(result)
