"""The retry policy and the Redis time budget: attempts are counted at a real proxy, never timed.

A request (a command, a ``redis_budget()`` block) spends at most ``RETRY['BUDGET']`` on a
failing Redis however many calls it makes; no attempt starts that the budget cannot pay for;
the waits between attempts are full jitter up to ``INITIAL_BACKOFF * 2**n``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.urls import path

from django_tagcache import tagcache
from django_tagcache.core import retry, steps
from tests.faults import Faulty
from tests.servers import free_port

TIMEOUT = 0.2  # each attempt on a hung server lasts this long


def configure(settings: Any, location: str, **retry: float) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "flaky": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location,
            "OPTIONS": {"SOCKET_TIMEOUT": TIMEOUT, "SOCKET_CONNECT_TIMEOUT": TIMEOUT},
        },
    }
    settings.TAGCACHE = {
        "CACHE": "flaky",
        "RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.2, "BUDGET": 1.0, **retry},
        "CIRCUIT_BREAKER": {"FAILURES": 0},  # off: the budget alone bounds the attempts here
    }


def behind_proxy(settings: Any, faulty: Faulty, **retry: float) -> None:
    configure(settings, f"redis://127.0.0.1:{faulty.proxy.port}/0", **retry)
    assert tagcache.set("warm", 1) is True  # a pooled connection exists before the fault
    faulty.proxy.sent = 0


@pytest.mark.parametrize(
    ("uniform", "attempts", "max_backoff", "expected"),
    [
        ("high", 4, 1.0, [0.01, 0.02, 0.04]),  # the bound doubles from INITIAL_BACKOFF
        ("high", 6, 0.03, [0.01, 0.02, 0.03, 0.03, 0.03]),  # ... up to MAX_BACKOFF
        ("low", 4, 1.0, [0.0, 0.0, 0.0]),  # full jitter: every wait may be as short as 0
    ],
)
def test_backoff_is_full_jitter_up_to_a_doubling_bound(
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    uniform: str,
    attempts: int,
    max_backoff: float,
    expected: list[float],
) -> None:
    configure(
        settings, f"redis://127.0.0.1:{free_port()}/0", ATTEMPTS=attempts, MAX_BACKOFF=max_backoff, BUDGET=30
    )
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # the waits are recorded, not slept
    monkeypatch.setattr(random, "uniform", (lambda a, b: b) if uniform == "high" else (lambda a, b: a))
    monkeypatch.setattr(random, "random", (lambda: 0.999) if uniform == "high" else (lambda: 0.0))
    assert tagcache.get("k") is None  # connection refused, every attempt
    assert waits == pytest.approx(expected)


def test_no_attempt_starts_that_the_budget_cannot_pay_for(settings: Any, faulty: Faulty) -> None:
    # One attempt on a hung server takes the socket timeout (0.2 s), more than the whole budget.
    behind_proxy(settings, faulty, ATTEMPTS=3, BUDGET=0.1)
    with faulty.hung():
        assert tagcache.get("k") is None
    assert faulty.proxy.sent == 1


class AttemptClock:
    """Stands for the ``time`` module of the retry loop and of the guard that makes its first
    attempt: every failed attempt lasts exactly TIMEOUT.

    An attempt on a hung server really lasts about TIMEOUT; on a loaded machine a little more,
    which is charged too and could leave the budget just short of a second attempt. The budget
    arithmetic is what this tests, so each attempt is charged its bound, whatever the load.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.started = False

    def monotonic(self) -> float:
        # Read twice per attempt: when it starts, and when it failed.
        if self.started:
            self.now += TIMEOUT
        self.started = not self.started
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_attempts_start_while_the_budget_covers_one(
    settings: Any, faulty: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    behind_proxy(settings, faulty, ATTEMPTS=10, BUDGET=0.5)
    clock = AttemptClock()
    monkeypatch.setattr(retry, "time", clock)
    monkeypatch.setattr(steps, "time", clock)  # the guard, which makes the first attempt
    with faulty.hung():
        assert tagcache.get("k") is None
    # 0.2 s each: a third would start with less than 0.2 s left.
    assert faulty.proxy.sent == 2


def many_calls(request: HttpRequest, calls: int) -> HttpResponse:
    values = [tagcache.get_or_set(f"k{i}", lambda: "v", tags=["t"]) for i in range(calls)]
    return HttpResponse(",".join(values))


async def many_calls_async(request: HttpRequest, calls: int) -> HttpResponse:
    return await sync_to_async(many_calls)(request, calls)


urlpatterns = [path("calls/<int:calls>/", many_calls), path("async/<int:calls>/", many_calls_async)]


@pytest.mark.parametrize("calls", [1, 5, 20])
def test_a_request_spends_one_budget_however_many_calls_it_makes(
    settings: Any, faulty: Faulty, calls: int
) -> None:
    budget = 1.0
    behind_proxy(settings, faulty, ATTEMPTS=3, BUDGET=budget)
    settings.ROOT_URLCONF = __name__
    client = Client()
    with faulty.hung():
        response = client.get(f"/calls/{calls}/")
        assert response.status_code == 200  # every value computed: failing open
        assert faulty.proxy.sent <= math.ceil(budget / TIMEOUT)
        # The next request has a budget of its own.
        sent = faulty.proxy.sent
        assert client.get("/calls/1/").status_code == 200
        assert faulty.proxy.sent > sent


def test_an_asgi_request_spends_one_budget(settings: Any, faulty: Faulty) -> None:
    # Django sends request_started to sync receivers in a task of its own under ASGI, so the
    # signal cannot open the request's budget there: the middleware does.
    behind_proxy(settings, faulty, ATTEMPTS=3, BUDGET=1.0)
    settings.ROOT_URLCONF = __name__
    settings.MIDDLEWARE = ["django_tagcache.middleware.RedisBudgetMiddleware", *settings.MIDDLEWARE]
    with faulty.hung():
        response = asyncio.run(AsyncClient().get("/async/20/"))  # through Django's ASGI handler
        assert response.status_code == 200
        assert faulty.proxy.sent <= math.ceil(1.0 / TIMEOUT)


def test_a_management_command_spends_one_budget(settings: Any, faulty: Faulty) -> None:
    from django.core.management import CommandError, call_command

    behind_proxy(settings, faulty, ATTEMPTS=3, BUDGET=0.5)
    with faulty.hung(), pytest.raises(CommandError) as failure:
        call_command("tagcache_invalidate", "t1", "t2")
    assert failure.value.returncode == 3
    assert faulty.proxy.sent <= math.ceil(0.5 / TIMEOUT)


def test_redis_budget_bounds_a_task(settings: Any, faulty: Faulty) -> None:
    from django_tagcache import redis_budget

    behind_proxy(settings, faulty, ATTEMPTS=3, BUDGET=5.0)
    with faulty.hung(), redis_budget(0.5) as budget:
        for i in range(10):
            assert tagcache.get(f"k{i}") is None
    assert faulty.proxy.sent <= math.ceil(0.5 / TIMEOUT)
    assert budget.attempts == faulty.proxy.sent
