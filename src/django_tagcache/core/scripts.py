"""The bundled Lua scripts and how they run: EVALSHA (Redis < 7) or FCALL (Redis 7+).

Each script is a plain Lua file under ``lua/``. For EVALSHA the file is the script; for Redis
Functions the same bodies are wrapped into one library whose name carries a digest of the
sources, so two versions of this package can share a server during a rolling deploy.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from redis.exceptions import ResponseError

from .bridge import blocking, run_sync, settle

if TYPE_CHECKING:
    from collections.abc import Sequence

    import redis

SCRIPT_NAMES = (
    "write",
    "generations",
    "invalidate",
    "drain",
    "miss",
    "unlock",
    "event_marks",
    "marks",
    # Redis Cluster: each touches one slot and declares every key (see cluster_store.py).
    "cluster_index",
    "cluster_set",
    "cluster_invalidate",
    "cluster_tombstone",
    "cluster_drain",
    "cluster_unlock",
    "cluster_event",
)
Mode = Literal["auto", "eval", "function"]


@cache
def source(name: str) -> str:
    """The Lua source of one bundled script."""
    return resources.files("django_tagcache.core").joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")


@cache
def library_name() -> str:
    """Name of the Redis Functions library: changes whenever any script changes."""
    digest = hashlib.sha1(usedforsecurity=False)
    for name in SCRIPT_NAMES:
        digest.update(source(name).encode())
    return f"tagcache_{digest.hexdigest()[:12]}"


@cache
def function_name(name: str) -> str:
    return f"{library_name()}_{name}"


@cache
def library_code() -> str:
    """The Redis Functions library holding every script, each as one function."""
    parts = [f"#!lua name={library_name()}"]
    for name in SCRIPT_NAMES:
        parts.append(
            f"redis.register_function('{function_name(name)}', function(KEYS, ARGV)\n{source(name)}\nend)"
        )
    return "\n".join(parts) + "\n"


def major_version(info: dict[str, Any]) -> int:
    return int(str(info["redis_version"]).split(".")[0])


def server_major_version(client: redis.Redis) -> int:
    return major_version(client.info("server"))


def is_missing_function(exc: BaseException) -> bool:
    """Whether an error says the server lacks the functions library (restarted, flushed)."""
    return isinstance(exc, ResponseError) and "function not found" in str(exc).lower()


class ScriptSteps:
    """Runs the bundled scripts on one client, loading them when the server lacks them.

    The steps are written once for both transports (see :mod:`.bridge`): :class:`ScriptRunner`
    runs them on a blocking client, :class:`~.aio_store.AsyncScriptRunner` on an asyncio one.
    """

    def __init__(self, client: Any, mode: Mode = "auto", *, pipelines: bool = True) -> None:
        self._client = client
        self._requested: Mode = mode
        self._mode: Literal["eval", "function"] | None = None if mode == "auto" else mode
        self._scripts: dict[str, Any] = {}
        # False on a client pinned to one connection: a pipeline would take another one.
        self._pipelines = pipelines

    def pinned(self, client: Any) -> Any:
        """A runner of the same kind and mode on ``client``, which holds one connection."""
        return type(self)(client, self._mode or self._requested, pipelines=False)

    async def _resolve_mode(self) -> Literal["eval", "function"]:
        """The path in use; "auto" asks the server its version once."""
        if self._mode is None:
            major = major_version(await settle(self._client.info("server")))
            self._mode = "function" if major >= 7 else "eval"
        return self._mode

    def _script(self, name: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self._client.register_script(source(name))
        return script

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if await self._resolve_mode() == "function":
            return await self._fcall(name, keys, args)
        return await settle(self._script(name)(keys=list(keys), args=list(args), client=self._client))

    async def _fcall(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await settle(self._client.fcall(function_name(name), len(keys), *keys, *args))
        except ResponseError as exc:
            # After a restart without persistence, or FUNCTION FLUSH, the library is gone.
            if not is_missing_function(exc):
                raise
            await self._load()
            return await settle(self._client.fcall(function_name(name), len(keys), *keys, *args))

    async def _pipelined(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run several calls of one script in one round trip; loads the script where missing."""
        if not self._pipelines:
            return [await self._run(name, keys, args) for keys, args in calls]
        if await self._resolve_mode() == "function":
            function = function_name(name)
            for attempt in range(2):
                pipe = self._client.pipeline(transaction=False)
                for keys, args in calls:
                    pipe.fcall(function, len(keys), *keys, *args)
                replies: list[Any] = await settle(pipe.execute(raise_on_error=False))
                errors = [r for r in replies if isinstance(r, Exception)]
                if attempt == 0 and any(is_missing_function(e) for e in errors):
                    await self._load()  # nothing ran: every call of the pipeline was refused alike
                    continue
                if errors:
                    raise errors[0]
                break
            return replies
        # EVALSHA: redis-py's Script loads itself into a pipeline before it runs.
        script = self._script(name)
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            await settle(script(keys=list(keys), args=list(args), client=pipe))
        return list(await settle(pipe.execute()))

    async def _load(self) -> dict[str, str]:
        """Load every script into the server; returns name -> SHA1 or function name."""
        if await self._resolve_mode() == "function":
            await settle(self._client.function_load(library_code(), replace=True))
            return {name: function_name(name) for name in SCRIPT_NAMES}
        return {name: str(await settle(self._client.script_load(source(name)))) for name in SCRIPT_NAMES}

    async def _loaded(self) -> dict[str, bool]:
        """Whether the server holds each script right now."""
        if await self._resolve_mode() == "function":
            libraries = await settle(self._client.function_list(library=library_name()))
            return dict.fromkeys(SCRIPT_NAMES, bool(libraries))
        shas = [hashlib.sha1(source(n).encode(), usedforsecurity=False).hexdigest() for n in SCRIPT_NAMES]
        flags = await settle(self._client.script_exists(*shas))
        return dict(zip(SCRIPT_NAMES, (bool(f) for f in flags), strict=True))


class ScriptRunner(ScriptSteps):
    """:class:`ScriptSteps` on a blocking redis-py client."""

    @property
    def mode(self) -> Literal["eval", "function"]:
        """The path in use; "auto" asks the server its version once."""
        return run_sync(self._resolve_mode())

    __call__ = blocking(ScriptSteps._run)
    pipelined = blocking(ScriptSteps._pipelined)
    load = blocking(ScriptSteps._load)
    loaded = blocking(ScriptSteps._loaded)
