"""The Django project the ASGI benchmark serves under uvicorn (benchmarks/asgi_views.py).

One async view, cached two ways on the same Redis (REDIS_URL) through Django's built-in
RedisCache: ``/ours/`` with ``cache_page_tagged`` (three tags), ``/theirs/`` with Django's
``cache_page``. The site-wide middleware stack of each is the package's request middleware only.
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.http import HttpRequest, HttpResponse

SECRET_KEY = "django-tagcache-benchmarks"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
INSTALLED_APPS = ["django_tagcache"]
DATABASES: dict[str, Any] = {}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
    }
}
TAGCACHE = {"CACHE": "default"}
ROOT_URLCONF = __name__
MIDDLEWARE = ["django_tagcache.middleware.RedisBudgetMiddleware"]

BODY = "".join(f"<li>product {i}: <b>{i * 3} EUR</b></li>" for i in range(160))


async def view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"<html><body><ul>{BODY}</ul></body></html>")


async def ping(request: HttpRequest) -> HttpResponse:
    return HttpResponse("pong")


urlpatterns: list[Any] = []
application: Any = None

if os.environ.get("DJANGO_SETTINGS_MODULE") == __name__:
    django.setup()
    from django.core.asgi import get_asgi_application
    from django.urls import path
    from django.views.decorators.cache import cache_page

    from django_tagcache.views import cache_page_tagged

    urlpatterns = [
        path("ping/", ping),
        path("ours/", cache_page_tagged(600, tags=["shop.product:1", "category:7", "promo"])(view)),
        path("theirs/", cache_page(600, key_prefix="theirs")(view)),
    ]
    application = get_asgi_application()
