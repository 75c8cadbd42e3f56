"""Retry policy for Redis calls, and the time budget that bounds it.

Connection errors, timeouts and the error replies of a Redis that cannot serve right now (out
of memory under ``noeviction``, a read-only replica after a failover, busy, master down: see
:class:`RedisTrouble`) count as Redis being unavailable; any other error is a bug or bad input
and surfaces at once. A failed call is retried with exponential backoff and full
jitter: the n-th wait (n = 0, 1, ...) is random in ``[0, min(INITIAL_BACKOFF * 2**n,
MAX_BACKOFF)]``.

Every attempt is paid for from a :class:`Budget`: the time lost to failed attempts and to the
waits between them. A budget belongs to one unit of work (a request, a command, a task; see
:mod:`django_tagcache.budget`) and is shared by every Redis call inside it, or, outside such a
unit, to one call. No attempt starts unless the budget can pay for it whole: an attempt may take
up to the client's socket timeout, so one starts only while at least that much is left (the very
first attempt of a budget always starts). A spent budget refuses calls without touching the
network: they fail at once with :class:`BudgetSpent`, a timeout.

The first attempt runs outside tenacity so the hot path pays nothing for the policy; tenacity
takes over only after a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from . import metrics

if TYPE_CHECKING:
    from .conf import RetrySettings

T = TypeVar("T")

RETRYABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


class RedisTrouble(RedisConnectionError):
    """Redis answered, with an error that says it cannot serve now (it is full, read-only, busy).

    A connection error, so every caller treats it as Redis being unavailable; not retried: the
    condition does not clear within milliseconds. The reply is the ``__cause__``."""


# Error replies that mean "not now" rather than "bad request": redis-py maps some to classes.
_TROUBLE_CLASSES = (OutOfMemoryError, ReadOnlyError)
_TROUBLE_CODES = ("MASTERDOWN ", "BUSY ", "NOREPLICAS ")


def is_trouble(exc: ResponseError) -> bool:
    """Whether an error reply means Redis cannot serve right now (see :class:`RedisTrouble`)."""
    return isinstance(exc, _TROUBLE_CLASSES) or str(exc).startswith(_TROUBLE_CODES)


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


# The budget of the unit of work running now; None outside one (each call then has its own).
_current: ContextVar[Budget | None] = ContextVar("django_tagcache_budget", default=None)


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


class _stop_when_over_budget(stop_base):
    """Stop retrying when the next attempt, after its wait, could not finish within the budget."""

    def __init__(self, budget: Budget, attempt_timeout: float) -> None:
        self.budget = budget
        self.attempt_timeout = attempt_timeout

    def __call__(self, retry_state: RetryCallState) -> bool:
        wait = retry_state.upcoming_sleep or 0.0
        return not self.budget.allows(self.attempt_timeout, wait)


def _count_retry(state: RetryCallState) -> None:
    metrics.incr("retries")


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


def call_with_retry(
    policy: RetrySettings | None,
    func: Callable[[], T],
    *,
    attempt_timeout: float = 0.0,
    budget: Budget | None = None,
) -> T:
    """Run ``func``; on a connection error or timeout, retry it under ``policy``.

    ``attempt_timeout`` bounds one attempt (the client's socket timeout; 0 if unknown).
    ``budget`` is charged with each failed attempt and wait (default: the current unit of work's,
    else a fresh one of ``policy.budget``). Raises :class:`BudgetSpent` without calling ``func``
    when the budget cannot pay for an attempt; else the last error once the attempts or the
    budget are used up.
    """
    if budget is None:
        budget = budget_for(policy)
    check_budget(budget, attempt_timeout)
    first = _charged(budget, func)
    try:
        return first()
    except RETRYABLE as exc:
        if policy is None or policy.attempts <= 1 or isinstance(exc, RedisTrouble):
            raise
        failure = exc
    # Tenacity's attempt 1 is the one that just failed (replayed without I/O), so that its wait
    # strategy numbers the waits from the first failure: [0, b], [0, 2b], [0, 4b] ...
    calls = iter([failure])

    def attempt() -> T:
        replayed = next(calls, None)
        if replayed is not None:
            raise replayed
        return first()

    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts) | _stop_when_over_budget(budget, attempt_timeout),
        # Full jitter: a random wait up to the exponential bound, so retrying clients spread out.
        wait=wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff, exp_base=2),
        retry=retry_if_exception(_retryable),
        before_sleep=_count_retry,
        sleep=budget.sleep,
        reraise=True,
    )
    return retrying(attempt)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE) and not isinstance(exc, RedisTrouble)


def _charged(budget: Budget, func: Callable[[], T]) -> Callable[[], T]:
    """``func``, charging the budget with the time of each attempt that fails; an error reply
    that means trouble is raised as :class:`RedisTrouble`."""

    def run() -> T:
        started = time.monotonic()
        try:
            return func()
        except RETRYABLE:
            budget.charge(time.monotonic() - started)
            budget.attempts += 1
            raise
        except ResponseError as exc:
            if not is_trouble(exc):
                raise
            budget.charge(time.monotonic() - started)
            budget.attempts += 1
            raise RedisTrouble(f"{type(exc).__name__}: {exc}") from exc

    return run
