"""``@cached``: cache a function's result under tags, keyed on its arguments."""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import hashlib
import inspect
import uuid
import weakref
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, cast

from ..core.bridge import run_sync
from .api import DEFAULT_TIMEOUT, TagCache, _Default
from .bubbling import collecting, note_tags
from .flows import ASYNC, BLOCKING, Flow
from .scopes import anote_tags
from .shadow import Compare, Origin
from .tags import normalize_tags

P = ParamSpec("P")
R = TypeVar("R")

_SCALARS = (str, int, float, bool, bytes, type(None))
# Values whose repr is their identity: equal values, equal text, in any process.
_VALUES = (datetime.date, datetime.time, datetime.timedelta, decimal.Decimal, uuid.UUID)


def _part(value: Any) -> str:
    """A stable text for one argument, identical across processes for equal arguments.

    Only values that are their own identity are keyed: scalars, dates and times, decimals,
    UUIDs, enum members, model instances (by primary key) and containers of them. Anything
    else (a request, a user session, an object with a custom repr) raises TypeError: its repr
    may be shared by callers who must not share a result (two users' requests print alike).
    """
    if isinstance(value, _SCALARS):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, enum.Enum):
        return f"enum:{type(value).__module__}.{type(value).__qualname__}:{_part(value.value)}"
    if isinstance(value, _VALUES):
        return f"{type(value).__name__}:{value!r}"
    meta = getattr(value, "_meta", None)
    if meta is not None and hasattr(value, "pk") and not isinstance(value, type):
        return f"model:{meta.label_lower}:{value.pk!r}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}[" + ",".join(_part(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return f"{type(value).__name__}{{" + ",".join(sorted(_part(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "dict{" + ",".join(sorted(f"{_part(k)}={_part(v)}" for k, v in value.items())) + "}"
    raise TypeError(
        f"@cached cannot key a {type(value).__qualname__} argument: it has no identity that two callers "
        "could not share (a request, for one, prints the same for every user). Pass key=callable, or "
        "pass the values the result depends on (a user's pk, a query string) instead."
    )


# Every @cached function by dotted name, as modules define them: tagcache_verify recomputes them.
# Process-global by nature (decorating happens at import); weak, so a function that goes, goes.
_registry: weakref.WeakValueDictionary[str, CachedFunction[Any, Any]] = weakref.WeakValueDictionary()


def registered() -> dict[str, CachedFunction[Any, Any]]:
    """The ``@cached`` functions defined so far in this process, by dotted name."""
    return dict(_registry)


def call_key(prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The cache key of one call: the function's dotted name plus a digest of its arguments."""
    text = _part(list(args)) + "|" + _part(kwargs)
    return f"fn:{prefix}:{hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()}"


class CachedFunction(Generic[P, R]):
    """A function whose results are cached under tags; see :func:`cached`."""

    def __init__(
        self,
        func: Callable[P, R],
        timeout: float | _Default | None,
        tags: object,
        key: Callable[P, str] | None,
        cache: TagCache,
        audit_compare: Compare | None = None,
        near: bool | None = None,
    ) -> None:
        self.__wrapped__ = func
        functools.update_wrapper(self, func)
        self._timeout = timeout
        self._tags = tags
        self._key = key
        self._cache = cache
        self._near = near
        self._prefix = f"{func.__module__}.{func.__qualname__}"
        self.audit_compare = audit_compare
        self._origin = Origin(self._prefix, True, audit_compare, self._prefix)
        _registry[self._prefix] = self

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The key one call's result is cached under."""
        if self._key is not None:
            return self._key(*args, **kwargs)
        return call_key(self._prefix, args, kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = run_sync(self._steps(BLOCKING, args, kwargs))
        return result

    async def acall(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """The call on ``redis.asyncio``: the result of an ``async def`` function, awaited."""
        return await self._steps(ASYNC, args, kwargs)

    async def _steps(self, flow: Flow, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tags = self._tags
        resolved: list[tuple[str, ...]] = []

        def call_tags() -> tuple[str, ...]:
            # Called on a miss, or on a hit when a page is collecting tags to bubble up; at most once.
            if not resolved:
                resolved.append(normalize_tags(tags(*args, **kwargs) if callable(tags) else tags))
            return resolved[0]

        if collecting():
            if flow.asynchronous:
                await anote_tags(call_tags())  # tokens read on the loop, not blocking it
            else:
                note_tags(call_tags())

        return await self._cache._get_or_compute_steps(
            flow,
            self.cache_key(*args, **kwargs),
            lambda: self.__wrapped__(*args, **kwargs),
            self._timeout,
            call_tags,
            None,
            (args, kwargs),  # instances among the arguments bound the read fence
            self._origin,
            self._near,
        )

    def forget(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Delete the cached result of one call; True if there was one."""
        return self._cache.delete(self.cache_key(*args, **kwargs))

    async def aforget(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """:meth:`forget`, awaited on ``redis.asyncio``."""
        return await self._cache.adelete(self.cache_key(*args, **kwargs))


def _coroutine_function(cached: CachedFunction[P, R]) -> CachedFunction[P, R]:
    """For an ``async def`` function: a coroutine function (``inspect.iscoroutinefunction`` is
    true of it, as frameworks check) that awaits the cached call, with the same helpers."""

    @functools.wraps(cached.__wrapped__)
    async def call(*args: P.args, **kwargs: P.kwargs) -> Any:
        return await cached.acall(*args, **kwargs)

    for name in ("cache_key", "forget", "aforget"):
        setattr(call, name, getattr(cached, name))
    return cast("CachedFunction[P, R]", call)


def cached(
    timeout: float | _Default | None = DEFAULT_TIMEOUT,
    tags: object = None,
    *,
    key: Callable[..., str] | None = None,
    cache: str | None = None,
    audit_compare: Callable[[Any, Any], bool] | None = None,
    near: bool | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results under ``tags``, with the guarantees of ``get_or_set``.

    ``tags`` is a list of tag sources, or a callable taking the function's arguments and
    returning them. ``key`` replaces the default key (the function's dotted name and a digest of
    its arguments; model instances count by primary key). ``cache`` names another cache alias.
    ``audit_compare(served, recomputed)`` tells the stale-read auditor and ``tagcache_verify``
    whether two results agree, for results not comparable by ``==`` (a queryset: compare ids).
    ``near`` overrides ``TAGCACHE['NEAR_CACHE']['DEFAULT']`` for this function (docs/near-cache.md).

    On an ``async def`` function the result is a coroutine function that caches on
    ``redis.asyncio`` (see :meth:`TagCache.aget_or_set`); ``await f.aforget(...)`` deletes a result.
    The stale-read auditor does not sample its hits.
    """

    def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
        wrapped = CachedFunction(func, timeout, tags, key, TagCache(cache), audit_compare, near)
        return _coroutine_function(wrapped) if inspect.iscoroutinefunction(func) else wrapped

    return decorate
