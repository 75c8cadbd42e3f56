"""URLs of the page tests: ``/<alias>/...`` decorated views, ``/site/<alias>/...`` for the middleware."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, path

from tests.views import decorated_views, undecorated_views


def _patterns(prefix: str, views: dict[str, Callable[..., Any]]) -> list[URLPattern]:
    patterns = []
    for name, view in views.items():
        route = f"{prefix}{name}/<int:pk>/" if name == "item" else f"{prefix}{name}/"
        patterns.append(path(route, view, name=f"{prefix}{name}"))
    return patterns


# The admin, for tests/test_admin.py (the purge action and the purge page).
urlpatterns: list[URLPattern | URLResolver] = [path("admin/", admin.site.urls)]
# One set of views per Redis or LocMem cache alias: the `alias` fixture runs the page tests on each backend.
for _alias, _config in settings.CACHES.items():
    _backend = str(_config["BACKEND"]).lower()  # type: ignore[index]  # django-stubs: dict[str, object]
    if "redis" not in _backend and "locmem" not in _backend:
        continue
    urlpatterns += _patterns(f"{_alias}/", decorated_views(_alias))
    urlpatterns += _patterns(f"site/{_alias}/", undecorated_views(_alias))
