"""A circuit breaker per Redis store: stop waiting on a Redis that keeps failing, probe it later.

Closed: calls go through. After ``failures`` consecutive failed calls it opens: calls fail at
once (callers fail open, or record the invalidation in the outbox) for ``reset_timeout`` seconds.
Then it is half-open: one call is let through as a probe; success closes it, failure opens it
again. Each change of state is logged once and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

from redis.exceptions import ConnectionError as RedisConnectionError

from . import metrics

logger = logging.getLogger("django_tagcache")
State = Literal["closed", "open", "half-open"]


class CircuitOpen(RedisConnectionError):
    """Raised instead of calling a Redis the breaker considers down.

    A connection error, so every caller treats it as such: reads fail open, invalidations are
    reported (or kept in the outbox)."""


class CircuitBreaker:
    """Thread-safe; one per store. ``failures`` of 0 disables it."""

    def __init__(self, name: str, *, failures: int, reset_timeout: float) -> None:
        self.name = name
        self.failures = failures
        self.reset_timeout = reset_timeout
        self._state: State = "closed"
        self._count = 0
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()
        #: Closed, and no failure counted since the last success: a call needs neither
        #: before_call() nor record_success() (read without the lock, on every call's path).
        self.healthy = True

    @property
    def state(self) -> State:
        with self._lock:
            if self._state == "open" and time.monotonic() - self._opened_at >= self.reset_timeout:
                return "half-open"
            return self._state

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go to Redis now."""
        if self.failures <= 0 or self._state == "closed":  # the hot path takes no lock
            return
        with self._lock:
            if self._state == "open":
                if time.monotonic() - self._opened_at < self.reset_timeout:
                    raise CircuitOpen(f"Redis for {self.name!r} is considered down (circuit open).")
                self._change("half-open")
            if self._probing:
                raise CircuitOpen(f"Redis for {self.name!r} is being probed (circuit half-open).")
            self._probing = True

    def record_success(self) -> None:
        if self._state == "closed" and self._count == 0:
            return
        with self._lock:
            self._count = 0
            self._probing = False
            if self._state != "closed":
                self._change("closed")
            self.healthy = True

    def release(self) -> None:
        """A call ended without telling whether Redis is up (it was cancelled): free the probe."""
        if self._probing:
            with self._lock:
                self._probing = False

    def record_failure(self) -> None:
        if self.failures <= 0:
            return
        with self._lock:
            self._count += 1
            self.healthy = False
            self._probing = False
            if self._state == "half-open" or (self._state == "closed" and self._count >= self.failures):
                self._opened_at = time.monotonic()
                self._change("open")

    def _change(self, state: State) -> None:
        previous, self._state = self._state, state
        metrics.incr(f"circuit_{state.replace('-', '_')}")
        log = logger.warning if state == "open" else logger.info
        log("django-tagcache: circuit for cache %r: %s -> %s.", self.name, previous, state)
