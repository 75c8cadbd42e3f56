"""L0, the request cache: within one request an entry is read from Redis at most once.

Opt-in with ``TAGCACHE['REQUEST_CACHE']``. Each request (Django's ``request_started`` ..
``request_finished``) gets an empty map of entry payloads: an entry read (or written) once is
served from it for the rest of the request. It is emptied whenever the request invalidates
anything, and dropped when the request ends.

Under ASGI Django sends ``request_started`` from a task whose context the view does not share,
so an async request gets its map from :func:`request_scope` instead, opened by the middleware
that opens the request's read fence (``ReadFenceMiddleware``, ``RedisBudgetMiddleware``): the
map lives in the request's own context, shared by the sync code it calls (``sync_to_async``
copies the context, and with it the same map), and is gone when the middleware returns.

Why this cannot store a stale value back: every payload here was read after the request
started, and the request's start is the read fence of everything it caches
(:mod:`django_tagcache.caching.fences`): a value built from a payload served here is refused if
one of its tags was invalidated since the request started, by anyone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..conf import conf

_entries: ContextVar[dict[tuple[object, str], bytes] | None] = ContextVar(
    "django_tagcache_request_cache", default=None
)


def request_started(**kwargs: Any) -> None:
    """Receiver of ``request_started``: a fresh request cache, if ``REQUEST_CACHE`` is on."""
    _entries.set({} if conf.REQUEST_CACHE else None)


def request_finished(**kwargs: Any) -> None:
    """Receiver of ``request_finished``: nothing read by this request outlives it."""
    _entries.set(None)


@contextmanager
def request_scope() -> Iterator[None]:
    """The L0 of one async request, for the block (when ``REQUEST_CACHE`` is on).

    Open it only together with the request's read fence, from the request's start: that fence
    is what keeps a value built from a payload held here from being stored stale.
    """
    token = _entries.set({} if conf.REQUEST_CACHE else None)
    try:
        yield
    finally:
        _entries.reset(token)


#: The map of the running request (None: no request cache), for the read path to take without a call.
entries = _entries


def active() -> bool:
    return _entries.get() is not None


def get(store: object, entry: str) -> bytes | None:
    held = _entries.get()
    return None if held is None else held.get((store, entry))


def put(store: object, entry: str, payload: bytes) -> None:
    held = _entries.get()
    if held is not None:
        held[store, entry] = payload


def forget(store: object, entry: str) -> None:
    held = _entries.get()
    if held is not None:
        held.pop((store, entry), None)


def clear() -> None:
    """This request invalidated something: whatever it read before may be gone."""
    held = _entries.get()
    if held is not None:
        held.clear()
