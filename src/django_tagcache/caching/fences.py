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
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from asgiref.sync import SyncToAsync, iscoroutinefunction, markcoroutinefunction

from ..core import protections
from . import namespaces, requestcache
from .loadtimes import read_since

if TYPE_CHECKING:
    from ..core.completions import Completion

#: Attribute of a model instance: when it was loaded (or built), in seconds since the epoch.
LOADED_AT = "_tagcache_loaded_at"
#: Attribute of a model instance that saved itself: (namespace, moment), the moment it counts as
#: read from in that namespace, later than its load time (see :func:`date_by_own_save`).
DATED_BY_SAVE = "_tagcache_dated_by_save"

_fence: ContextVar[float | None] = ContextVar("django_tagcache_fence", default=None)


# The start of each request Django's ASGI handler serves, by the request's asgiref
# ThreadSensitiveContext (see request_started()); an entry goes with its request.
_started: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _request_context() -> Any:
    """The ThreadSensitiveContext the current code runs in, if any.

    Django's ASGIHandler serves each request inside one; the task that runs request_started's
    sync receivers and the view's task (and the thread of a sync view) all inherit it. Read
    defensively: without it, requests need ReadFenceMiddleware as before.
    """
    holder = getattr(SyncToAsync, "thread_sensitive_context", None)
    return holder.get(None) if holder is not None else None


def current() -> float | None:
    """The fence of the current request or :func:`fence` block, in seconds since the epoch."""
    moment = _fence.get()
    if moment is None and _started:
        context = _request_context()
        if context is not None:
            return _started.get(context)
    return moment


@contextmanager
def fence(start: float | None = None) -> Iterator[float]:
    """Within the block, cached values count as built from data read as early as its start.

    Use it around work outside a request (a task, a command) that reads data and then caches
    something built from it; requests get one from their start automatically. ``start``
    (seconds since the epoch) dates the block earlier than now, for data read before it opened.
    """
    start = time.time() if start is None else min(start, time.time())
    outer = current()
    token = _fence.set(start if outer is None else min(outer, start))
    try:
        yield start
    finally:
        _fence.reset(token)


#: Key of an ASGI request's ``scope``: when the request started, in seconds since the epoch.
STARTED = "django_tagcache.started"


def request_started(**kwargs: Any) -> None:
    """Receiver of Django's ``request_started``: the request's data is read after this moment.

    Under ASGI, Django sends the signal with ``asend()``, which runs sync receivers in a task
    of their own: the fence set here never reaches the request. The moment is then also
    stamped on the request's ``scope``, which the request object carries, for
    :func:`of_request` (pages, fragments rendered with the request in their context, and
    ``RedisBudgetMiddleware``, which opens the request's fence from it); and kept for the
    request's ThreadSensitiveContext, which Django's ASGI handler shares with the view, so that
    :func:`current` finds it there without any middleware.
    """
    now = time.time()
    _fence.set(now)
    scope = kwargs.get("scope")
    if isinstance(scope, dict):
        scope[STARTED] = now
        context = _request_context()
        if context is not None:
            _started[context] = now


def of_request(request: object) -> float | None:
    """When ``request`` started, if its ASGI scope was stamped by :func:`request_started`."""
    scope = getattr(request, "scope", None)
    moment = scope.get(STARTED) if isinstance(scope, dict) else None
    return moment if isinstance(moment, float) else None


def request_finished(**kwargs: Any) -> None:
    """Receiver of Django's ``request_finished``: the thread's next work is not this request."""
    _fence.set(None)


class ReadFenceMiddleware:
    """Make the start of each request its read fence under ASGI too: list it first in ``MIDDLEWARE``.

    Under WSGI Django's ``request_started`` signal does it. Under ASGI Django sends that signal
    from a task whose context the view does not share: Django's ``ASGIHandler`` shares the
    request's ThreadSensitiveContext with the view, where :func:`current` finds the start, but
    a request served outside one (the test ``AsyncClient``) has a fence without this middleware
    (or ``RedisBudgetMiddleware``) only in pages and fragments rendered with the request in
    their context, from the start stamped on the request's scope.
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
        with fence(of_request(request)):  # from the request's start, if stamped
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        # From the request's start, if stamped; and the request's L0, which that fence covers.
        with fence(of_request(request)), requestcache.request_scope():
            return await self.get_response(request)


def mark_loaded(instance: Any) -> None:
    """Record when the data ``instance`` holds was read (a registered model's ``post_init``): the
    start of the query its row came from, or earlier (see :mod:`django_tagcache.caching.loadtimes`)."""
    instance.__dict__[LOADED_AT] = read_since() if protections.on("query_start") else time.time()


def load_time(instance: Any) -> float | None:
    """When the data ``instance`` holds was read, in the current namespace (None: unknown)."""
    held = getattr(instance, "__dict__", {})
    saved = held.get(DATED_BY_SAVE)
    if saved is not None and saved[0] == namespaces.current():
        return float(saved[1])
    return held.get(LOADED_AT)


def date_by_own_save(
    instance: Any, loaded: float, tags: frozenset[str], found: dict[str, Completion], margin: float
) -> None:
    """Date ``instance`` by its own save's invalidation, if that is provably safe.

    ``loaded`` is when the instance's data was read before the save, ``tags`` every tag of the
    row as saved (each change of the row invalidates at least one of them), ``found`` the
    completions of the save's invalidation (:mod:`~django_tagcache.core.completions`). After
    the save the instance holds the row as stored, except for changes other editors committed
    since ``loaded``; each of those completes an invalidation of one of ``tags`` after
    ``loaded``. One that completed before the save's own shows as a ``previous`` completion
    later than ``loaded``: then nothing changes. One that completes after it is refused by the
    new date, which is just after the save's own completion (completion times only grow). Tags
    drained in several calls, or completed at different moments, leave the instance as it is.
    """
    margin_us = int(margin * 1_000_000)
    since = to_us(loaded) - margin_us  # what a write dated ``loaded`` would be refused for
    done: set[int] = set()
    for tag in tags:
        completion = found.get(tag)
        if completion is None or completion.done is None:
            return
        if (
            completion.previous is not None
            and completion.previous >= since
            and protections.on("own_save_check")
        ):
            return
        done.add(completion.done)
    if len(done) == 1:
        # A write is refused if a completion is at or after (fence - margin): so exactly those
        # after the save's own. The half microsecond keeps float rounding off the boundary.
        moment = (done.pop() + margin_us + 1.5) / 1_000_000
        instance.__dict__[DATED_BY_SAVE] = (namespaces.current(), moment)


def loaded_at(sources: object) -> float | None:
    """The earliest load time of a model instance in ``sources`` (nested lists, tuples, sets, dicts),
    or start of a request there (see :func:`of_request`)."""
    found: float | None = None
    stack = [sources]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            # A model instance; otherwise a request, whose data is read after it started.
            moment = load_time(item) if hasattr(item, "_meta") else of_request(item)
            if moment is not None and (found is None or moment < found):
                found = moment
    return found


def earliest(*moments: float | None) -> float | None:
    """The earliest of the known moments, or None."""
    known = [m for m in moments if m is not None]
    return min(known) if known else None


def read_fence(sources: object = None) -> float | None:
    """The fence of a write whose tag sources (and arguments) are ``sources``."""
    return earliest(current(), loaded_at(sources) if sources is not None else None)


def to_us(moment: float | None) -> int:
    """A fence as the write scripts take it: microseconds since the epoch, 0 for none."""
    return 0 if moment is None else int(moment * 1_000_000)
