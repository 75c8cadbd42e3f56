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
takes over only after a failure. One body serves both transports (see :mod:`.bridge`): tenacity's
``AsyncRetrying``, whose waits block the thread for a blocking client and yield to the loop for an
asyncio one.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from . import metrics
from .aio_pool import ConnectionsBusy
from .bridge import run_sync, settle
from .timebudget import Budget, budget_for, check_budget

if TYPE_CHECKING:
    from .timebudget import RetrySettings

T = TypeVar("T")
#: Replaces an error of a client by the connection error it stands for, or returns None.
Translate = Callable[[BaseException], "Exception | None"]

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
    translate: Translate | None = None,
) -> T:
    """Run ``func``; on a connection error or timeout, retry it under ``policy``.

    ``attempt_timeout`` bounds one attempt (the client's socket timeout; 0 if unknown).
    ``budget`` is charged with each failed attempt and wait (default: the current unit of work's,
    else a fresh one of ``policy.budget``). Raises :class:`BudgetSpent` without calling ``func``
    when the budget cannot pay for an attempt; else the last error once the attempts or the
    budget are used up. ``translate`` may replace an error of the client by the connection
    error it stands for (then retried like one).
    """
    if budget is None:
        budget = budget_for(policy)
    check_budget(budget, attempt_timeout)
    # A blocking func and sleep: the coroutine never suspends (see bridge.py).
    result: T = run_sync(attempts(policy, func, attempt_timeout, budget, translate, blocking_sleep))
    return result


async def attempts(
    policy: RetrySettings | None,
    func: Callable[[], Any],
    attempt_timeout: float,
    budget: Budget | None,
    translate: Translate | None,
    sleep: Callable[[Budget], Callable[[float], Awaitable[None]]],
) -> Any:
    """The attempts of one call, for either transport: ``func`` and the waits ``sleep(budget)``
    gives block, or return awaitables (``Budget.asleep`` then, so the waits do not block the loop).
    ``budget`` None: the call's own, of ``policy.budget``, made when an attempt fails."""
    # The first attempt: charging() written out, since this is every call's path.
    started = time.monotonic()
    try:
        result = func()
        if type(result) is CoroutineType:  # the asyncio transport's, without inspect's calls
            return await result
        if inspect.isawaitable(result):  # inline, not settle()
            result = await result
        return result
    except BaseException as exc:
        failure = exc
    # Outside the except block: the retries' own errors are not chained to the first failure.
    return await retried(policy, func, attempt_timeout, budget, translate, sleep, failure, started)


async def retried(
    policy: RetrySettings | None,
    func: Callable[[], Any],
    attempt_timeout: float,
    budget: Budget | None,
    translate: Translate | None,
    sleep: Callable[[Budget], Callable[[float], Awaitable[None]]],
    failure: BaseException,
    started: float,
) -> Any:
    """What :func:`attempts` does once the first attempt, started at ``started``, raised
    ``failure``: charge the budget, then raise, or retry under ``policy``. A caller that makes
    the first attempt itself (the asyncio store's hot path) hands its failure on here."""
    if budget is None:
        budget = budget_for(policy)
    try:
        _charge(budget, translate, failure, started)  # raises the error ``failure`` stands for, if another
        raise failure
    except RETRYABLE as exc:
        replay = _replay(policy, exc)

    async def attempt() -> Any:
        if replay:
            raise replay.pop()
        with charging(budget, translate):
            return await settle(func())

    return await AsyncRetrying(sleep=sleep(budget), **_strategy(policy, budget, attempt_timeout))(attempt)


def blocking_sleep(budget: Budget) -> Callable[[float], Awaitable[None]]:
    """``budget.sleep`` in the shape tenacity's ``AsyncRetrying`` takes; it blocks the thread."""

    async def sleep(seconds: float) -> None:
        budget.sleep(seconds)

    return sleep


def _replay(policy: RetrySettings | None, failure: Exception) -> list[Exception]:
    """After the first attempt failed: re-raise unless the policy retries it, else the failure
    for tenacity's attempt 1 to replay without I/O, so that its wait strategy numbers the waits
    from the first failure: [0, b], [0, 2b], [0, 4b] ..."""
    if policy is None or policy.attempts <= 1 or isinstance(failure, (RedisTrouble, ConnectionsBusy)):
        raise failure
    return [failure]


def _strategy(policy: RetrySettings | None, budget: Budget, attempt_timeout: float) -> dict[str, Any]:
    """Tenacity's stop, wait and retry strategies for ``policy``, shared by both transports."""
    assert policy is not None  # _replay raised otherwise
    return {
        "stop": stop_after_attempt(policy.attempts) | _stop_when_over_budget(budget, attempt_timeout),
        # Full jitter: a random wait up to the exponential bound, so retrying clients spread out.
        "wait": wait_random_exponential(
            multiplier=policy.initial_backoff, max=policy.max_backoff, exp_base=2
        ),
        "retry": retry_if_exception(_retryable),
        "before_sleep": _count_retry,
        "reraise": True,
    }


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE) and not isinstance(exc, (RedisTrouble, ConnectionsBusy))


def _charge(budget: Budget, translate: Translate | None, exc: BaseException, started: float) -> None:
    """An attempt started at ``started`` raised ``exc``: charge the budget if it was a failed
    attempt, and raise the error ``exc`` stands for (translated, or :class:`RedisTrouble`) if another."""
    replaced = None if translate is None else translate(exc)
    if replaced is not None:
        budget.charge(time.monotonic() - started)
        budget.attempts += 1
        raise replaced from exc
    trouble = isinstance(exc, ResponseError) and is_trouble(exc)
    if isinstance(exc, RETRYABLE) or trouble:
        budget.charge(time.monotonic() - started)
        budget.attempts += 1
    if trouble:
        raise RedisTrouble(f"{type(exc).__name__}: {exc}") from exc


class charging:
    """Charge the budget with the time of an attempt that fails in the block; an error reply that
    means trouble is raised as :class:`RedisTrouble`. A class, not a generator: it is on every retry."""

    __slots__ = ("budget", "started", "translate")

    def __init__(self, budget: Budget, translate: Translate | None = None) -> None:
        self.budget = budget
        self.translate = translate

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if exc is not None:
            _charge(self.budget, self.translate, exc, self.started)
        return False
