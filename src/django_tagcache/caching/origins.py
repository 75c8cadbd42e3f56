"""What is invalidating right now: the ``source`` of the events announcing it (docs/events.md).

The ORM's commit hooks say ``orm``, the outbox's replay ``outbox``; any other call is ``api``
(or, when it names an audited ``source=``, that source: ``admin:...``, ``command:...``). A
consumer applying another service's events says None: what it applies is not announced again,
so two services consuming each other's streams do not echo events back and forth.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_origin: ContextVar[str | None] = ContextVar("django_tagcache_origin", default="api")


@contextmanager
def invalidating_as(origin: str | None) -> Iterator[None]:
    """Within the block, invalidations are announced with ``origin`` (None: not announced)."""
    token = _origin.set(origin)
    try:
        yield
    finally:
        _origin.reset(token)


def event_source(source: str | None) -> str | None:
    """The ``source`` of the event announcing an invalidation now, or None to announce nothing."""
    origin = _origin.get()
    if origin is None:
        return None
    return source or origin
