"""App configuration: all wiring happens in ready()."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


class TagCacheConfig(AppConfig):
    name = "django_tagcache"
    verbose_name = "Tag cache"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks

        setting_changed.connect(_settings_changed, dispatch_uid="django_tagcache.settings_changed")


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHES", "TAGCACHE"):
        from .api import reset_stores

        reset_stores()
