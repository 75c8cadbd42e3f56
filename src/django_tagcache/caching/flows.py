"""How the caching API runs on each transport: one body of logic, two ways to do its I/O.

The API's logic (read, write, recompute, invalidate) is written once as coroutines (see
:mod:`django_tagcache.core.bridge`); a :class:`Flow` supplies what differs between a blocking
caller and an asyncio one: which store, how to wait, how to run the caller's code, how to send
a signal. With :data:`BLOCKING` the coroutines never suspend and finish at once. A class gives
each operation its two public faces: ``get = blocking(_get_steps)``, ``aget = awaited(_get_steps)``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from ..core.bridge import run_sync
from .stores import get_async_store, get_store

if TYPE_CHECKING:
    from django.dispatch import Signal

logger = logging.getLogger("django_tagcache")
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Flow:
    """The transport-specific parts of the caching API's logic."""

    #: The store of a cache alias: a TagStore (blocking) or an AsyncTagStore.
    store: Callable[[str | None], Any]
    #: Wait, without (asyncio) or with (blocking) holding the thread.
    sleep: Callable[[float], Awaitable[None]]
    #: Run the caller's code (a compute function): its awaitable is awaited on the asyncio flow.
    call: Callable[[Callable[[], Any]], Awaitable[Any]]
    #: Send a signal to its receivers, robustly.
    send: Callable[..., Awaitable[None]]
    asynchronous: bool


async def _block(seconds: float) -> None:
    time.sleep(seconds)


async def _call_blocking(func: Callable[[], Any]) -> Any:
    return func()


async def _call_awaiting(func: Callable[[], Any]) -> Any:
    result = func()
    if inspect.isawaitable(result):
        result = await result
    return result


def _log_failures(results: list[tuple[Any, Any]]) -> None:
    """The invalidation is done by then: a receiver's bug must neither turn it into an error for
    the caller nor keep the receivers after it (the audit log, the CDN purge) from running."""
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "django-tagcache: receiver %r of an invalidation signal raised", receiver, exc_info=result
            )


async def _send_blocking(signal: Signal, sender: Any, **kwargs: Any) -> None:
    _log_failures(signal.send_robust(sender=sender, **kwargs))


async def _send_awaiting(signal: Signal, sender: Any, **kwargs: Any) -> None:
    # Async receivers run in the loop, blocking ones (the audit log's database write) in a thread.
    _log_failures(await signal.asend_robust(sender=sender, **kwargs))


BLOCKING = Flow(get_store, _block, _call_blocking, _send_blocking, asynchronous=False)
ASYNC = Flow(get_async_store, asyncio.sleep, _call_awaiting, _send_awaiting, asynchronous=True)


Steps = Callable[Concatenate[Any, Flow, P], Coroutine[Any, Any, T]]


class _Face(Generic[P, T]):
    """A public method running a ``_steps(self, flow, ...)`` method on one flow.

    Read on the class, it is a plain function with the steps' signature less ``flow`` (what
    ``help()`` and the API reference show).
    """

    def __init__(self, steps: Steps[P, T]) -> None:
        self.steps = steps
        self.__doc__ = steps.__doc__
        self.unbound = self._unbound(steps)
        signature = inspect.signature(steps)
        parameters = list(signature.parameters.values())
        self.unbound.__signature__ = signature.replace(parameters=parameters[:1] + parameters[2:])  # type: ignore[attr-defined]
        self.unbound.__doc__ = steps.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.unbound.__name__ = name
        self.unbound.__qualname__ = f"{owner.__qualname__}.{name}"
        self.unbound.__module__ = owner.__module__

    def _unbound(self, steps: Steps[P, T]) -> Callable[..., Any]:
        raise NotImplementedError


class blocking(_Face[P, T]):
    """``name = blocking(_name_steps)``: the steps on :data:`BLOCKING`, run to the end at once."""

    def _unbound(self, steps: Steps[P, T]) -> Callable[..., Any]:
        def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return run_sync(steps(obj, BLOCKING, *args, **kwargs))

        return method

    @overload
    def __get__(self, obj: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, T]: ...
    def __get__(self, obj: object | None, owner: type) -> Any:
        if obj is None:
            return self.unbound
        steps = self.steps

        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            result: T = run_sync(steps(obj, BLOCKING, *args, **kwargs))
            return result

        return call


class awaited(_Face[P, T]):
    """``aname = awaited(_name_steps)``: the steps on :data:`ASYNC`, a coroutine to await."""

    def _unbound(self, steps: Steps[P, T]) -> Callable[..., Any]:
        async def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return await steps(obj, ASYNC, *args, **kwargs)

        return method

    @overload
    def __get__(self, obj: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: object | None, owner: type) -> Any:
        if obj is None:
            return self.unbound
        return functools.partial(self.steps, obj, ASYNC)
