"""The Django project tests/asgi.py serves under uvicorn: the test settings, async views, one module.

Environment: ``TAGCACHE_TEST_ALIAS`` (the cache alias, default ``default``) and
``TAGCACHE_TEST_SITE`` (``1``: the site-wide middleware caches ``/site/`` too). ``/stats/``
reports what the process did: how often each view computed its page and how many calls the
synchronous tag store made, on the event loop's thread or another one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.cache import never_cache

from tests import settings as _base
from tests.views import http_options

globals().update({name: getattr(_base, name) for name in dir(_base) if name.isupper()})

ALIAS = os.environ.get("TAGCACHE_TEST_ALIAS", "default")
TAGCACHE = {"CACHE": ALIAS, "CLOCK_SKEW_MARGIN": 0}
ROOT_URLCONF = __name__
ALLOWED_HOSTS = ["127.0.0.1"]
# The request's budget and read fence (not with TAGCACHE_TEST_BARE=1), then
# (TAGCACHE_TEST_SITE=1) the site-wide page cache.
MIDDLEWARE = (
    []
    if os.environ.get("TAGCACHE_TEST_BARE") == "1"
    else ["django_tagcache.middleware.RedisBudgetMiddleware"]
)
if os.environ.get("TAGCACHE_TEST_SITE") == "1":
    MIDDLEWARE += [
        "django_tagcache.middleware.UpdateTagCacheMiddleware",
        "django_tagcache.middleware.FetchFromTagCacheMiddleware",
    ]
    CACHE_MIDDLEWARE_SECONDS = 60

#: How many times each view computed its response, by name.
COMPUTED: Counter[str] = Counter()
#: Calls of the synchronous tag store, by where they ran: "loop" (blocking the event loop) or "thread".
SYNC_STORE_CALLS: Counter[str] = Counter()


def _count_sync_store_calls() -> None:
    """Count each call of the synchronous store (this process is a test server, nothing else)."""
    from django_tagcache.core.store import TagStore

    original = TagStore._call

    def counted(self: TagStore, func: Any) -> Any:
        try:
            asyncio.get_running_loop()
            SYNC_STORE_CALLS["loop"] += 1
        except RuntimeError:
            SYNC_STORE_CALLS["thread"] += 1
        return original(self, func)

    TagStore._call = counted  # type: ignore[method-assign]


async def page(request: HttpRequest) -> HttpResponse:
    from django_tagcache import aadd_tags

    COMPUTED["page"] += 1
    await aadd_tags("apage")  # (already the decorated view's own tag; the site-wide page's only one)
    return http_options(request, HttpResponse(f"page {COMPUTED['page']} {request.method}"))


async def reference(request: HttpRequest) -> HttpResponse:
    """The same view as :func:`page`, for Django's own ``cache_page``: the reference of HTTP semantics."""
    COMPUTED["django"] += 1
    return http_options(request, HttpResponse(f"django {COMPUTED['django']} {request.method}"))


async def fragments(request: HttpRequest) -> TemplateResponse:
    COMPUTED["fragments"] += 1
    return TemplateResponse(
        request, "tagcache_tests/async_page.html", {"n": COMPUTED["fragments"], "alias": ALIAS}
    )


async def fenced(request: HttpRequest) -> HttpResponse:
    """Reads its data, then (the first time) an invalidation of ``late`` completes, then it notes ``late``."""
    from django_tagcache import add_tags, invalidate_tags

    COMPUTED["fenced"] += 1
    read = COMPUTED["fenced"]
    if read == 1:  # the first computation only: an editor commits meanwhile
        await sync_to_async(invalidate_tags)("late")
    add_tags("late")  # noted after the invalidation: only the request's start can refuse the page
    return HttpResponse(f"fenced {read}")


#: What :func:`value` reads, by key: 1, then 2 once the first request has "edited" it.
VALUES: dict[str, int] = {}


async def value(request: HttpRequest) -> HttpResponse:
    """Reads its data (a plain number); then, the first time for its key, an editor changes it and
    the invalidation of ``v:<key>`` completes; then it caches what it read with aget_or_set."""
    from django_tagcache import ainvalidate_tags, tagcache

    key = request.GET["k"]
    read = VALUES.setdefault(key, 1)
    if read == 1:
        VALUES[key] = 2
        await ainvalidate_tags(f"v:{key}")

    def compute() -> int:
        COMPUTED["value"] += 1
        return read

    cached = await tagcache.aget_or_set(f"value:{key}", compute, timeout=60, tags=[f"v:{key}"])
    return HttpResponse(str(cached))


@never_cache
async def stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "computed": dict(COMPUTED),
            "sync_store_calls": dict(SYNC_STORE_CALLS),
            "threads": threading.active_count(),
        }
    )


@never_cache
async def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("pong")


def _urls() -> list[Any]:
    from django.views.decorators.cache import cache_page

    from django_tagcache.views import cache_page_tagged

    return [
        path("ping/", ping),
        path("stats/", stats),
        path("page/", cache_page_tagged(60, tags=["apage"])(page)),
        path("fragments/", cache_page_tagged(60, tags=lambda request: ["fpage"])(fragments)),
        path("fenced/", cache_page_tagged(60)(fenced)),
        path("django/", cache_page(60, cache="builtin", key_prefix="reference")(reference)),
        path("site/", page),
        path("value/", value),
        path("valuepage/", cache_page_tagged(60, tags=["vpage"])(value)),
    ]


urlpatterns: list[Any] = []
application: Any = None

if os.environ.get("DJANGO_SETTINGS_MODULE") == __name__:
    django.setup()
    from django.core.asgi import get_asgi_application

    _count_sync_store_calls()
    urlpatterns = _urls()
    application = get_asgi_application()
