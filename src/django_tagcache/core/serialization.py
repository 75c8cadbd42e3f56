"""Entry payloads: a format version, a kind, then a pickle; anything else reads as a miss.

Every payload starts with two bytes: :data:`FORMAT_VERSION`, then its kind:

- ``p``: the pickle of a value (``tagcache.set``, ``get_or_set``, ``@cached``);
- ``x``: the compute time and the expiry time (two big-endian doubles, seconds), then the pickle
  of a value: what a reader needs to recompute early (XFetch);
- ``w``: as ``x``, plus a third double, the time the value was written (``get_or_set`` and
  ``@cached`` write this kind): the age of a served entry, for the stale-read auditor. Payloads
  of kind ``x`` and ``p`` written before it stay readable (their age is unknown);
- ``r``: the pickle of ``(value, tags, tokens)``, a rendered fragment or page, whose tags and
  generation tokens vouch for it when it is served inside another page.

A payload of another version (written before a deploy that changed the format), of another kind,
not written by this package, truncated, or whose pickle names a class that no longer exists is
not an error: :func:`loads` returns None and the caller treats it as a miss, counted as
``unreadable``. A deploy that changes the format bumps :data:`FORMAT_VERSION`.
"""

from __future__ import annotations

import logging
import math
import pickle
import random
import struct
import time
from typing import Any, Final

from . import metrics

logger = logging.getLogger("django_tagcache")

#: The first byte of every payload; entries of any other version are misses.
FORMAT_VERSION: Final = 1
_PLAIN: Final = bytes([FORMAT_VERSION]) + b"p"
_TIMED: Final = bytes([FORMAT_VERSION]) + b"x"
_RENDERED: Final = bytes([FORMAT_VERSION]) + b"r"
_WRITTEN: Final = bytes([FORMAT_VERSION]) + b"w"
_HEADER = struct.Struct(">dd")
_STAMPED = struct.Struct(">ddd")


class Unpicklable(TypeError):
    """A value cannot be pickled: ``get_or_set`` serves it without storing it; ``set`` raises this."""


def _pickle(value: Any) -> bytes:
    try:
        return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    # What pickle raises for a lock, a lambda, a generator, an open file...: not one class.
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise Unpicklable(f"{type(value).__qualname__} cannot be pickled: {exc}") from exc


def dumps(value: Any) -> bytes:
    """The payload of ``value``; raises :class:`Unpicklable` (a TypeError) if it cannot be pickled."""
    return _PLAIN + _pickle(value)


def dumps_timed(value: Any, compute_seconds: float, ttl_ms: int) -> bytes:
    """A payload carrying how long ``value`` took to compute and when it expires."""
    expiry = time.time() + ttl_ms / 1000 if ttl_ms else math.inf
    return _TIMED + _HEADER.pack(compute_seconds, expiry) + _pickle(value)


def dumps_stamped(value: Any, compute_seconds: float, ttl_ms: int) -> bytes:
    """A payload carrying its compute time, its expiry and the time it is written (now)."""
    now = time.time()
    expiry = now + ttl_ms / 1000 if ttl_ms else math.inf
    return _WRITTEN + _STAMPED.pack(compute_seconds, expiry, now) + _pickle(value)


def written_at(raw: bytes) -> float | None:
    """When a value payload was written (epoch seconds), if it says so; read without unpickling."""
    if raw[:2] == _WRITTEN and len(raw) >= 2 + _STAMPED.size:
        return float(_STAMPED.unpack_from(raw, 2)[2])
    return None


def dumps_rendered(value: Any, tags: tuple[str, ...], tokens: tuple[str, ...]) -> bytes:
    """The payload of a rendered fragment or page, with the tags and tokens it was written under."""
    return _RENDERED + _pickle((value, tags, tokens))


def _unpickle(raw: bytes, start: int) -> tuple[bool, Any]:
    try:
        # A memoryview: no copy of the payload on the hot path.
        return True, pickle.loads(memoryview(raw)[start:])
    # Unpickling foreign or stale bytes raises almost anything (UnpicklingError, EOFError,
    # AttributeError or ModuleNotFoundError for a class gone in a deploy, ValueError, ...).
    except Exception as exc:
        _unreadable(f"{type(exc).__name__}: {exc}")
        return False, None


def _unreadable(why: str) -> None:
    metrics.incr("unreadable")
    logger.debug("django-tagcache: an entry could not be read (%s); treated as a miss.", why)


def loads(raw: bytes) -> tuple[Any, float, float] | None:
    """(value, compute seconds, expiry) of a value payload, (value, 0, inf) if untimed; None if unreadable."""
    head = raw[:2]
    if head == _PLAIN:
        start = 2
    elif head == _TIMED and len(raw) >= 2 + _HEADER.size:
        start = 2 + _HEADER.size
    elif head == _WRITTEN and len(raw) >= 2 + _STAMPED.size:
        start = 2 + _STAMPED.size
    else:
        _unreadable(f"not a value payload of format version {FORMAT_VERSION}")
        return None
    try:  # _unpickle(), inlined: this is every hit's path
        value = pickle.loads(memoryview(raw)[start:])
    except Exception as exc:
        _unreadable(f"{type(exc).__name__}: {exc}")
        return None
    if head == _PLAIN:
        return value, 0.0, math.inf
    if head == _TIMED:
        delta, expiry = _HEADER.unpack_from(raw, 2)
        return value, delta, expiry
    delta, expiry, _ = _STAMPED.unpack_from(raw, 2)
    return value, delta, expiry


def loads_rendered(raw: bytes) -> tuple[Any, tuple[str, ...], tuple[str, ...]] | None:
    """(value, tags, tokens) of a rendered payload; None if it is anything else."""
    if raw[:2] == _RENDERED:
        ok, loaded = _unpickle(raw, 2)
        if ok and isinstance(loaded, tuple) and len(loaded) == 3:
            return loaded  # a triple, as dumps_rendered() writes it
    else:
        _unreadable(f"not a rendered payload of format version {FORMAT_VERSION}")
    return None


def recompute_early(compute_seconds: float, expiry: float, beta: float) -> bool:
    """XFetch: recompute before expiry with a probability that grows as expiry nears.

    The longer a value takes to compute, the earlier one reader volunteers; ``beta`` > 1 favours
    earlier recomputation (see Vattani et al., "Optimal Probabilistic Cache Stampede Prevention").
    """
    if beta <= 0 or compute_seconds <= 0 or math.isinf(expiry):
        return False
    return time.time() - compute_seconds * beta * math.log(1.0 - random.random()) >= expiry
