"""Entry payloads: a pickled value, or the same behind a small header for early recomputation.

A plain payload is ``pickle.dumps(value)`` (it starts with pickle's protocol byte, 0x80). When
early recomputation (XFetch) is on, the payload is ``b"X"``, the compute time and the expiry time
(two big-endian doubles, seconds), then the pickle: what a reader needs to decide to recompute
before the entry expires.
"""

from __future__ import annotations

import math
import pickle
import random
import struct
import time
from typing import Any

_HEADER = struct.Struct(">dd")
_MARK = b"X"


def dumps(value: Any) -> bytes:
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def dumps_timed(value: Any, compute_seconds: float, ttl_ms: int) -> bytes:
    """A payload carrying how long ``value`` took to compute and when it expires."""
    expiry = time.time() + ttl_ms / 1000 if ttl_ms else math.inf
    return _MARK + _HEADER.pack(compute_seconds, expiry) + dumps(value)


def loads(raw: bytes) -> tuple[Any, float, float]:
    """(value, compute seconds, expiry) of a payload; plain payloads give (value, 0, inf)."""
    if raw[:1] == _MARK:
        delta, expiry = _HEADER.unpack_from(raw, 1)
        return pickle.loads(raw[1 + _HEADER.size :]), delta, expiry
    return pickle.loads(raw), 0.0, math.inf


def recompute_early(compute_seconds: float, expiry: float, beta: float) -> bool:
    """XFetch: recompute before expiry with a probability that grows as expiry nears.

    The longer a value takes to compute, the earlier one reader volunteers; ``beta`` > 1 favours
    earlier recomputation (see Vattani et al., "Optimal Probabilistic Cache Stampede Prevention").
    """
    if beta <= 0 or compute_seconds <= 0 or math.isinf(expiry):
        return False
    return time.time() - compute_seconds * beta * math.log(1.0 - random.random()) >= expiry
