"""One body of logic for two transports: coroutines that a blocking client runs to the end at once.

The stores' steps (plan a script call, send it, read the reply, decide the next call) are
written once, as ``async def`` methods that reach Redis only through ``await settle(...)`` or the
store's ``_io``. On an asyncio client each such await suspends; on a blocking client the call
has already happened when the await is reached, so the coroutine never suspends and
:func:`run_sync` finishes it with a single ``send``. A blocking store exposes each step through
:class:`blocking`, an asyncio store through :class:`awaiting`: the same method, two faces.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

P = ParamSpec("P")
T = TypeVar("T")

Step = Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Finish a coroutine that does no asyncio I/O; raise if it tries to suspend."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("A blocking store step awaited real asyncio I/O.")


async def settle(value: Any) -> Any:
    """``value`` itself from a blocking client, or what it resolves to from an asyncio one."""
    if inspect.isawaitable(value):
        return await value
    return value


class _Face(Generic[P, T]):
    """A face of a step: ``name = blocking(Steps._name)`` or ``name = awaiting(Steps._name)``.

    The step is looked up on the instance at each call, so a subclass's override of ``_name``
    (the cluster's, the in-process store's) is the one that runs.
    """

    def __init__(self, step: Step[P, T]) -> None:
        self.step = step.__name__
        self.__doc__ = step.__doc__

    def __get__(self, obj: object | None, owner: type) -> Any:
        if obj is None:
            return self
        return self.face(getattr(obj, self.step))

    def face(self, step: Callable[P, Coroutine[Any, Any, T]]) -> Any:
        raise NotImplementedError


class blocking(_Face[P, T]):
    """The blocking face of a step: runs it to the end at once (see the module docstring)."""

    if TYPE_CHECKING:

        @overload
        def __get__(self, obj: None, owner: type) -> blocking[P, T]: ...
        @overload
        def __get__(self, obj: object, owner: type) -> Callable[P, T]: ...
        def __get__(self, obj: object | None, owner: type) -> Any: ...

    def face(self, step: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            result: T = run_sync(step(*args, **kwargs))
            return result

        return call


class awaiting(_Face[P, T]):
    """The asyncio face of a step: the step itself, to be awaited."""

    if TYPE_CHECKING:

        @overload
        def __get__(self, obj: None, owner: type) -> awaiting[P, T]: ...
        @overload
        def __get__(self, obj: object, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...
        def __get__(self, obj: object | None, owner: type) -> Any: ...

    def face(self, step: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        return step
