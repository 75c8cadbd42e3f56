"""Single flight for rendered fragments: one caller renders a missing fragment, the others wait.

Values (``get_or_set``, ``@cached``) take their lock inside the miss script (see recompute.py);
a fragment reads its tokens through its render scope, so it takes the lock with a separate
``SET NX``: one more round trip, on misses only.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from ..conf import conf
from ..core import metrics
from ..core.protocol import new_token
from ..core.retry import RETRYABLE
from .failopen import fail_open
from .rendering import read_entry
from .stores import get_store


def single_flight(alias: str, entry: str) -> str | None:
    """Try to become the one caller that renders ``entry``: the lock's owner token, "" when single
    flight is off or Redis fails (render without it), None when another caller holds the lock."""
    lock_ms = int(conf.STAMPEDE.lock_ttl * 1000)
    if not lock_ms:
        return ""
    owner = new_token()
    try:
        taken = get_store(alias).lock(entry, owner, lock_ms)
    except RETRYABLE as exc:
        fail_open("lock", exc)
        return ""
    return owner if taken else None


def release(alias: str, entry: str, owner: str) -> None:
    if owner:
        with contextlib.suppress(*RETRYABLE):  # the lock expires on its own
            get_store(alias).unlock(entry, owner)


def wait_for(alias: str, entry: str) -> Any:
    """While another caller renders ``entry``: its stale copy (a soft purge kept one) if any, else the
    entry once it appears, polled for up to ``STAMPEDE['WAIT']`` seconds; None if neither came."""
    stampede = conf.STAMPEDE
    deadline = time.monotonic() + stampede.wait
    try:
        stale = read_entry(alias, entry + ":stale")
        if stale is not None:
            metrics.incr("stale_served")
            return stale[0]
        while time.monotonic() < deadline:
            time.sleep(stampede.poll)
            hit = read_entry(alias, entry)
            if hit is not None:
                metrics.incr("stampede_waits")
                return hit[0]
    except RETRYABLE as exc:
        fail_open("read", exc)
        return None
    metrics.incr("stampede_timeouts")
    return None
