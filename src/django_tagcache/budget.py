"""One Redis time budget per unit of work: a request, a management command, a task.

Every Redis call inside the unit shares the budget of ``RETRY['BUDGET']`` seconds: the time it
may lose to failed attempts and the waits between them. Once it is spent, further calls of the
same unit fail open at once, without touching the network, and the circuit breaker (which has
seen the failures) takes over for the units that follow. See :mod:`django_tagcache.retry`.

Requests get theirs from the ``request_started`` signal (connected in ``AppConfig.ready()``),
management commands from :class:`~django_tagcache.management.base.TagCacheCommand`; anything
else (a task, a consumer's batch) opens one with :func:`redis_budget`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from .conf import conf
from .retry import Budget, close_budget, current_budget, open_budget, replace_budget

__all__ = ["Budget", "current_budget", "redis_budget"]


@contextmanager
def redis_budget(seconds: float | None = None) -> Iterator[Budget]:
    """Run the block with one Redis time budget shared by every call in it.

    ``seconds`` defaults to ``TAGCACHE['RETRY']['BUDGET']``. The block gets a budget of its own
    even inside another unit of work (a task run inline in a request, say); the enclosing
    budget is current again after the block. Yields the :class:`~django_tagcache.retry.Budget`
    (``spent`` says how much it lost).
    """
    token = open_budget(conf.RETRY.budget if seconds is None else seconds)
    try:
        budget = current_budget()
        assert budget is not None
        yield budget
    finally:
        close_budget(token)


def on_request_started(**kwargs: Any) -> None:
    """Give the request that starts a budget of its own."""
    try:
        total = conf.RETRY.budget
    except ImproperlyConfigured:
        return  # django_tagcache.E001 says why; each call then has its own budget
    replace_budget(Budget(total))


def on_request_finished(**kwargs: Any) -> None:
    """Forget the request's budget (a server thread's context outlives its requests)."""
    replace_budget(None)
