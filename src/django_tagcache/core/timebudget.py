"""The time a unit of work may lose to a failing Redis, shared by all its calls. No Django here.

Every attempt of a Redis call is paid for from a :class:`Budget`: the time lost to failed
attempts and to the waits between them. A budget belongs to one unit of work (a request, a
command, a task; see :mod:`django_tagcache.caching.budget`) and is shared by every Redis call inside it,
or, outside such a unit, to one call. No attempt starts unless the budget can pay for it whole:
an attempt may take up to the client's socket timeout, so one starts only while at least that
much is left (the very first attempt of a budget always starts). A spent budget refuses calls
without touching the network: they fail at once with :class:`BudgetSpent`, a timeout.
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError


@dataclass(frozen=True)
class RetrySettings:
    """The retry policy of ``TAGCACHE['RETRY']``: read by the settings, passed in here."""

    attempts: int
    initial_backoff: float
    max_backoff: float
    budget: float


class BudgetSpent(RedisTimeoutError):
    """Raised instead of a Redis call when the time budget of the unit of work is used up.

    A timeout, so every caller treats it as one: reads fail open, invalidations are reported (or
    kept in the outbox)."""


class Budget:
    """Seconds a unit of work may lose to a failing Redis, and how many it has lost.

    Only failed attempts and the waits between them are charged: a Redis that answers costs the
    budget nothing, however many calls are made. Not thread-safe: one unit of work, one thread.
    """

    __slots__ = ("attempts", "spent", "total")

    def __init__(self, total: float) -> None:
        self.total = total
        self.spent = 0.0
        self.attempts = 0  # failed attempts charged, for tests and benchmarks

    def __repr__(self) -> str:
        return f"Budget(total={self.total}, spent={self.spent:.3f})"

    @property
    def left(self) -> float:
        return self.total - self.spent

    def allows(self, attempt_timeout: float, wait: float = 0.0) -> bool:
        """Whether an attempt bounded by ``attempt_timeout`` may start after a wait of ``wait`` seconds."""
        if self.spent == 0 and wait == 0:
            return True  # the first attempt always starts: without one, no call could ever succeed
        return self.left - wait > 0 and self.left - wait >= attempt_timeout

    def charge(self, seconds: float) -> None:
        self.spent += seconds

    def sleep(self, seconds: float) -> None:
        """Wait between attempts; the wait is charged."""
        self.charge(seconds)
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        """:meth:`sleep` for a coroutine: the loop serves other tasks meanwhile."""
        self.charge(seconds)
        await asyncio.sleep(seconds)


# The budget of the unit of work running now; None outside one (each call then has its own).
_current: ContextVar[Budget | None] = ContextVar("django_tagcache_budget", default=None)
#: :func:`current_budget` without the function call, for the path every Redis call takes.
unit_budget = _current


def current_budget() -> Budget | None:
    """The budget shared by the unit of work running in this context, if any."""
    return _current.get()


def open_budget(total: float) -> Any:
    """Make a fresh budget of ``total`` seconds current; returns the token for :func:`close_budget`."""
    return _current.set(Budget(total))


def close_budget(token: Any) -> None:
    _current.reset(token)


def replace_budget(budget: Budget | None) -> None:
    """Make ``budget`` current for the rest of this context (a request's, from its signals)."""
    _current.set(budget)


def budget_for(policy: RetrySettings | None) -> Budget:
    """The budget a call pays from: the unit of work's, else a fresh one for this call alone."""
    return _current.get() or Budget(float("inf") if policy is None else policy.budget)


def check_budget(budget: Budget, attempt_timeout: float) -> None:
    """Raise :class:`BudgetSpent` unless ``budget`` can pay for an attempt now."""
    if not budget.allows(attempt_timeout):
        raise BudgetSpent(f"The Redis time budget of {budget.total} s is spent ({budget.spent:.3f} s lost).")


def client_attempt_timeout(client: Any) -> float:
    """How long one attempt on ``client`` may take: the larger of its socket and connect timeouts.

    0 when it has none (redis-py then waits forever, and no budget can bound an attempt).
    """
    manager = getattr(client, "nodes_manager", None)  # a RedisCluster
    pool = getattr(client, "connection_pool", None)
    source = manager if manager is not None else pool
    kwargs: dict[str, Any] = getattr(source, "connection_kwargs", None) or {}
    timeouts = [kwargs.get("socket_timeout"), kwargs.get("socket_connect_timeout")]
    return max([float(t) for t in timeouts if t is not None], default=0.0)
