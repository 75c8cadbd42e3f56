"""Read fences: the earliest moment the data of a value being cached may have been read.

Generation tokens prove that no invalidation happened between a miss and its write. They say
nothing of data read *before* the miss: the instance a view loaded before a fragment opened,
the argument of an ``@cached`` call. A fence bounds that moment from below, and a checked write
is refused if one of its tags' last invalidation completed at or after the fence (minus
``CLOCK_SKEW_MARGIN``): see docs/concepts.md, "Read fences".

The fence of a write is the earliest of: the start of the current request (``request_started``),
the start of the innermost enclosing :func:`fence` block, the load time of any registered model
instance among the call's tag sources or ``@cached`` arguments, and, for a fragment or page, the
moment it started rendering. Without any of them a ``get_or_set`` miss has no fence: its data is
read after the miss, which the generations cover exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

#: Attribute of a model instance: when it was loaded (or built), in seconds since the epoch.
LOADED_AT = "_tagcache_loaded_at"

_fence: ContextVar[float | None] = ContextVar("django_tagcache_fence", default=None)


def current() -> float | None:
    """The fence of the current request or :func:`fence` block, in seconds since the epoch."""
    return _fence.get()


@contextmanager
def fence() -> Iterator[float]:
    """Within the block, cached values count as built from data read as early as its start.

    Use it around work outside a request (a task, a command) that reads data and then caches
    something built from it; requests get one from their start automatically.
    """
    start = time.time()
    outer = _fence.get()
    token = _fence.set(start if outer is None else min(outer, start))
    try:
        yield start
    finally:
        _fence.reset(token)


def request_started(**kwargs: Any) -> None:
    """Receiver of Django's ``request_started``: the request's data is read after this moment."""
    _fence.set(time.time())


def request_finished(**kwargs: Any) -> None:
    """Receiver of Django's ``request_finished``: the thread's next work is not this request."""
    _fence.set(None)


class ReadFenceMiddleware:
    """Make the start of each request its read fence under ASGI too: list it first in ``MIDDLEWARE``.

    Under WSGI Django's ``request_started`` signal does it. Under ASGI Django sends that signal
    from a task whose context the view does not share, so without this middleware an ASGI request
    has no fence of its own (instances' load times and the generations still apply).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        with fence():
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        with fence():
            return await self.get_response(request)


def mark_loaded(instance: Any) -> None:
    """Record that ``instance`` holds data read now (a registered model's ``post_init``)."""
    instance.__dict__[LOADED_AT] = time.time()


def loaded_at(sources: object) -> float | None:
    """The earliest load time of a model instance in ``sources`` (nested lists, tuples, sets, dicts)."""
    found: float | None = None
    stack = [sources]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            moment = getattr(item, "__dict__", {}).get(LOADED_AT) if hasattr(item, "_meta") else None
            if moment is not None and (found is None or moment < found):
                found = moment
    return found


def earliest(*moments: float | None) -> float | None:
    """The earliest of the known moments, or None."""
    known = [m for m in moments if m is not None]
    return min(known) if known else None


def read_fence(sources: object = None) -> float | None:
    """The fence of a write whose tag sources (and arguments) are ``sources``."""
    return earliest(_fence.get(), loaded_at(sources) if sources is not None else None)


def to_us(moment: float | None) -> int:
    """A fence as the write scripts take it: microseconds since the epoch, 0 for none."""
    return 0 if moment is None else int(moment * 1_000_000)
