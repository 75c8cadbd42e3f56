"""Running the bundled scripts on a Redis Cluster: each on the primary of its keys' slot.

Every command names its primary explicitly: redis-py would otherwise ask a node
``COMMAND GETKEYS`` before every FCALL or pipelined EVALSHA, and could send reads to a replica
that has not seen an invalidation yet. Commands for several slots are pipelined.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import NoScriptError, ResponseError, SlotNotCoveredError

from .scripts import SCRIPT_NAMES, Mode, ScriptRunner, function_name, library_name, source

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster


class ClusterScriptRunner(ScriptRunner):
    """Runs the bundled scripts on the primaries of a cluster; a node that lacks them gets them."""

    def __init__(self, client: RedisCluster, mode: Mode = "auto") -> None:
        super().__init__(cast("redis.Redis", client), mode)
        self.cluster: Any = client  # redis-py's cluster API is untyped

    def slot(self, key: str) -> int:
        return int(self.cluster.keyslot(key))

    def _primary(self, slot: int) -> Any:
        try:
            return self.cluster.nodes_manager.get_node_from_slot(slot)
        except SlotNotCoveredError:
            # The slot map is stale (a failover or resharding went on): reread it before the retry.
            self.cluster.nodes_manager.initialize()
            raise

    def execute(self, slot: int, *command: Any) -> Any:
        """Run one command on the primary of ``slot`` (redis-py still follows MOVED and ASK)."""
        return self.cluster.execute_command(*command, target_nodes=self._primary(slot))

    def send(self, commands: Sequence[tuple[int, Sequence[Any]]]) -> list[Any]:
        """Run ``(slot, command)`` pairs on the primary of each slot, pipelined; errors are returned."""
        pipe = self.cluster.pipeline(transaction=False)
        for slot, command in commands:
            pipe.execute_command(*command, target_nodes=self._primary(slot))
        return list(pipe.execute(raise_on_error=False))

    def command(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        if self.mode == "function":
            return ["FCALL", function_name(name), len(keys), *keys, *args]
        sha = hashlib.sha1(source(name).encode(), usedforsecurity=False).hexdigest()
        return ["EVALSHA", sha, len(keys), *keys, *args]

    def script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[int, list[Any]]:
        """A ``(slot, command)`` pair running a bundled script: keys[0] names the slot."""
        return self.slot(keys[0]), self.command(name, keys, args)

    def run(self, calls: Sequence[tuple[str, Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run ``(script, keys, args)`` calls, each on the primary of its keys' slot, pipelined."""
        return self.run_commands([self.script(name, keys, args) for name, keys, args in calls])

    def run_commands(self, commands: Sequence[tuple[int, Sequence[Any]]]) -> list[Any]:
        """Run ``(slot, command)`` pairs pipelined; scripts among them are loaded where missing.

        A primary without the scripts (new, failed over, flushed) makes every primary load
        them, and the calls it refused run again; nothing ran for those. Raises the first error.
        """
        results = self.send(commands)
        missing = [i for i, result in enumerate(results) if _is_missing_script(result)]
        if missing:
            self.load()
            for i, result in zip(missing, self.send([commands[i] for i in missing]), strict=True):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def __call__(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return self.run([(name, keys, args)])[0]

    def loaded(self) -> dict[str, bool]:
        """Whether every primary holds each script right now."""
        if self.mode == "eval":
            return super().loaded()  # SCRIPT EXISTS goes to every primary; redis-py ANDs the answers
        # FUNCTION LIST goes to every primary: {node: libraries} (just the libraries with one node).
        answers = self.cluster.function_list(library=library_name())
        present = all(answers.values()) if isinstance(answers, dict) else bool(answers)
        return dict.fromkeys(SCRIPT_NAMES, present)


def _is_missing_script(result: Any) -> bool:
    if isinstance(result, NoScriptError):
        return True
    return isinstance(result, ResponseError) and "function not found" in str(result).lower()
