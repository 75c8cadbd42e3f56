"""One Redis time budget per unit of work: a request, a management command, a task.

Every Redis call inside the unit shares the budget of ``RETRY['BUDGET']`` seconds: the time it
may lose to failed attempts and the waits between them. Once it is spent, further calls of the
same unit fail open at once, without touching the network, and the circuit breaker (which has
seen the failures) takes over for the units that follow. See :mod:`django_tagcache.core.retry`.

Under WSGI, requests get theirs from the ``request_started`` signal (connected in
``AppConfig.ready()``). Under ASGI that cannot work (Django sends the signal to sync receivers in
a task of its own, whose context the request never sees): :class:`RedisBudgetMiddleware`, first
in ``MIDDLEWARE``, opens it there, and works under WSGI too. It opens the request's read fence
(:mod:`django_tagcache.caching.fences`) the same way, for the same reason. Management commands get theirs from
:class:`~django_tagcache.management.base.TagCacheCommand`; anything else (a task, a consumer's
batch) opens one with :func:`redis_budget`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import ImproperlyConfigured

from ..conf import conf
from ..core.timebudget import Budget, close_budget, current_budget, open_budget, replace_budget
from . import fences, requestcache

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase

__all__ = ["Budget", "RedisBudgetMiddleware", "current_budget", "redis_budget"]


@contextmanager
def redis_budget(seconds: float | None = None) -> Iterator[Budget]:
    """Run the block with one Redis time budget shared by every call in it.

    ``seconds`` defaults to ``TAGCACHE['RETRY']['BUDGET']``. The block gets a budget of its own
    even inside another unit of work (a task run inline in a request, say); the enclosing
    budget is current again after the block. Yields the :class:`~django_tagcache.core.timebudget.Budget`
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


class RedisBudgetMiddleware:
    """Give each request one Redis time budget, under ASGI as under WSGI: list it first in ``MIDDLEWARE``.

    It also opens the request's read fence, from the moment the request started: under ASGI,
    only pages and fragments rendered with the request in their context have one without it.

    The budget covers every middleware after it and the view; a streaming response's content,
    produced after the middleware returned, has per-call budgets.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        with redis_budget(), fences.fence(fences.of_request(request)):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        respond: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        # The request's read fence too, from its start: request_started cannot set it here; and
        # the request's L0, which that fence covers.
        with redis_budget(), fences.fence(fences.of_request(request)), requestcache.request_scope():
            return await respond(request)
