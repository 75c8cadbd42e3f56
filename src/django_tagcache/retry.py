"""Retry policy for Redis calls: exponential backoff with jitter, bounded in attempts and time.

Only connection errors and timeouts are retried; any other error is a bug or bad input and
surfaces at once. The first attempt runs outside tenacity so the hot path pays nothing for
the policy; tenacity takes over only after a failure.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from . import metrics

if TYPE_CHECKING:
    from .conf import RetrySettings

T = TypeVar("T")

RETRYABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


def _count_retry(state: RetryCallState) -> None:
    metrics.incr("retries")


def call_with_retry(policy: RetrySettings, func: Callable[[], T]) -> T:
    """Run ``func``; on a connection error or timeout, retry it under ``policy``.

    The last error is re-raised once the attempts or the time budget are used up.
    """
    started = time.monotonic()
    try:
        return func()
    except RETRYABLE:
        if policy.attempts <= 1 or policy.budget <= 0:
            raise
    metrics.incr("retries")
    time.sleep(min(policy.initial_backoff * (1 + random.random()), policy.budget))
    left = max(0.0, policy.budget - (time.monotonic() - started))
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts - 1) | stop_after_delay(left),
        # Full jitter: a random wait up to the exponential bound, so retrying clients spread out.
        wait=wait_random_exponential(multiplier=policy.initial_backoff, max=policy.max_backoff),
        retry=retry_if_exception_type(RETRYABLE),
        before_sleep=_count_retry,
        reraise=True,
    )
    return retrying(func)
