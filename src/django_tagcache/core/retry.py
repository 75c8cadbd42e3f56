"""Retry policy for Redis calls, and the time budget that bounds it.

Connection errors, timeouts and the error replies of a Redis that cannot serve right now (out
of memory under ``noeviction``, a read-only replica after a failover, busy, master down: see
:class:`RedisTrouble`) count as Redis being unavailable; any other error is a bug or bad input
and surfaces at once. A failed call is retried with exponential backoff and full
jitter: the n-th wait (n = 0, 1, ...) is random in ``[0, min(INITIAL_BACKOFF * 2**n,
MAX_BACKOFF)]``.

Every attempt and wait is paid for from the unit of work's time budget
(:mod:`django_tagcache.core.timebudget`): no attempt starts that the budget cannot pay for.

The first attempt runs outside tenacity so the hot path pays nothing for the policy; tenacity
takes over only after a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

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
from .timebudget import Budget, budget_for, check_budget

if TYPE_CHECKING:
    from .timebudget import RetrySettings

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
