"""Settings, read from ``settings.TAGCACHE`` on every access so ``override_settings`` just works."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULTS: dict[str, Any] = {
    "CACHE": "default",
    "DEFAULT_TIMEOUT": 300,
    "KEY_PREFIX": "tagcache",
    "CHUNK_SIZE": 2000,
    "GENERATION_TTL": 86400,
    "PRUNE_PER_WRITE": 64,
    "MAX_ENTRY_SIZE": 8 * 1024 * 1024,
    "MAX_TAG_LENGTH": 256,
    "SCRIPT_MODE": "auto",
    "RETRY": {},
}

RETRY_DEFAULTS: dict[str, float] = {
    "ATTEMPTS": 3,
    "INITIAL_BACKOFF": 0.01,
    "MAX_BACKOFF": 0.2,
    "BUDGET": 1.0,
}


@dataclass(frozen=True)
class RetrySettings:
    attempts: int
    initial_backoff: float
    max_backoff: float
    budget: float


class Settings:
    """Typed accessors over ``settings.TAGCACHE``; every key is optional."""

    @property
    def _raw(self) -> dict[str, Any]:
        value = getattr(settings, "TAGCACHE", {})
        if not isinstance(value, dict):
            raise ImproperlyConfigured("settings.TAGCACHE must be a dict.")
        return cast("dict[str, Any]", value)

    def _get(self, name: str) -> Any:
        return self._raw.get(name, DEFAULTS[name])

    def _int(self, name: str, minimum: int) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ImproperlyConfigured(f"TAGCACHE[{name!r}] must be an integer >= {minimum}, not {value!r}.")
        return value

    @property
    def CACHE(self) -> str:
        value = self._get("CACHE")
        if not isinstance(value, str) or not value:
            raise ImproperlyConfigured(f"TAGCACHE['CACHE'] must name an alias in CACHES, not {value!r}.")
        return value

    @property
    def DEFAULT_TIMEOUT(self) -> float | None:
        value = self._get("DEFAULT_TIMEOUT")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ImproperlyConfigured(
                f"TAGCACHE['DEFAULT_TIMEOUT'] must be a number of seconds or None, not {value!r}."
            )
        return cast("float | None", value)

    @property
    def KEY_PREFIX(self) -> str:
        value = self._get("KEY_PREFIX")
        if not isinstance(value, str) or not value or any(c.isspace() or c in "{}" for c in value):
            raise ImproperlyConfigured(
                f"TAGCACHE['KEY_PREFIX'] must be a non-empty string without spaces or braces, not {value!r}."
            )
        return value

    @property
    def CHUNK_SIZE(self) -> int:
        return self._int("CHUNK_SIZE", 1)

    @property
    def GENERATION_TTL(self) -> int:
        return self._int("GENERATION_TTL", 1)

    @property
    def PRUNE_PER_WRITE(self) -> int:
        return self._int("PRUNE_PER_WRITE", 1)

    @property
    def MAX_ENTRY_SIZE(self) -> int:
        return self._int("MAX_ENTRY_SIZE", 1)

    @property
    def MAX_TAG_LENGTH(self) -> int:
        return self._int("MAX_TAG_LENGTH", 1)

    @property
    def SCRIPT_MODE(self) -> str:
        value = self._get("SCRIPT_MODE")
        if value not in ("auto", "eval", "function"):
            raise ImproperlyConfigured(
                f"TAGCACHE['SCRIPT_MODE'] must be 'auto', 'eval' or 'function', not {value!r}."
            )
        return cast("str", value)

    @property
    def RETRY(self) -> RetrySettings:
        given = self._get("RETRY")
        if not isinstance(given, dict) or set(given) - set(RETRY_DEFAULTS):
            raise ImproperlyConfigured(
                f"TAGCACHE['RETRY'] must be a dict with keys among {sorted(RETRY_DEFAULTS)}, not {given!r}."
            )
        merged = {**RETRY_DEFAULTS, **given}
        attempts = merged["ATTEMPTS"]
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ImproperlyConfigured("TAGCACHE['RETRY']['ATTEMPTS'] must be an integer >= 1.")
        for name in ("INITIAL_BACKOFF", "MAX_BACKOFF", "BUDGET"):
            if (
                isinstance(merged[name], bool)
                or not isinstance(merged[name], (int, float))
                or merged[name] < 0
            ):
                raise ImproperlyConfigured(f"TAGCACHE['RETRY'][{name!r}] must be a number of seconds >= 0.")
        return RetrySettings(
            attempts=int(attempts),
            initial_backoff=float(merged["INITIAL_BACKOFF"]),
            max_backoff=float(merged["MAX_BACKOFF"]),
            budget=float(merged["BUDGET"]),
        )

    def unknown_keys(self) -> list[str]:
        """Keys in settings.TAGCACHE that this version does not know (reported by a system check)."""
        return sorted(set(self._raw) - set(DEFAULTS))


conf = Settings()
