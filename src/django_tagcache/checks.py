"""System checks, ids ``django_tagcache.E0xx`` (errors) and ``W0xx`` (warnings)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .backends import SUPPORTED, backend_kind
from .conf import DEFAULTS, conf

W001 = "django_tagcache.W001"


def register_checks() -> None:
    """Register the checks (from AppConfig.ready(), never at import)."""
    register(check_settings, Tags.caches)
    register(check_tag_templates, Tags.models)


def check_tag_templates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E004: a tag template (``Meta.cache_tags`` or ``register()``) that cannot be rendered."""
    from .registry import registry

    return [
        Error(
            error,
            hint="Tag templates may use {pk} and the model's concrete field attnames.",
            id="django_tagcache.E004",
        )
        for config in registry.configs()
        for error in config.errors
    ]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001 bad TAGCACHE value, E002 unknown alias, E003 unsupported backend, W001 unknown key."""
    messages: list[CheckMessage] = []
    try:
        for name in DEFAULTS:
            getattr(conf, name)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="django_tagcache.E001")]
    messages += [
        Warning(
            f"Unknown TAGCACHE key {key!r}; it has no effect.",
            hint="Check its spelling.",
            id="django_tagcache.W001",
        )
        for key in conf.unknown_keys()
    ]
    alias = conf.CACHE
    if alias not in settings.CACHES:
        messages.append(
            Error(
                f"TAGCACHE['CACHE'] is {alias!r}, which is not an alias in CACHES.",
                hint=f"Use one of: {', '.join(sorted(settings.CACHES))}.",
                id="django_tagcache.E002",
            )
        )
        return messages
    cache = caches[alias]
    if backend_kind(cache) is None:
        messages.append(
            Error(
                f"Cache {alias!r} uses {type(cache).__module__}.{type(cache).__qualname__}, which "
                "django-tagcache does not support.",
                hint=f"Use one of: {', '.join(SUPPORTED)}.",
                id="django_tagcache.E003",
            )
        )
    return messages
