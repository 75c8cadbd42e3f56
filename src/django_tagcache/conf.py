"""Settings, read from ``settings.TAGCACHE`` on every access so ``override_settings`` just works."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .core.timebudget import RetrySettings

DEFAULTS: dict[str, Any] = {
    "CACHE": "default",
    "CACHES": None,
    "DEFAULT_TIMEOUT": 300,
    "KEY_PREFIX": "tagcache",
    "CHUNK_SIZE": 2000,
    "GENERATION_TTL": 86400,
    "PRUNE_PER_WRITE": 64,
    "TOMBSTONE_TTL": 10,
    "CLOCK_SKEW_MARGIN": 0.1,
    "DRAIN_GUARD_TTL": 60,
    "INVALIDATION_REPLICAS": 0,
    "INVALIDATION_REPLICA_TIMEOUT": 0.5,
    "MAX_ENTRY_SIZE": 8 * 1024 * 1024,
    "MAX_TAG_LENGTH": 256,
    "SCRIPT_MODE": "auto",
    "RETRY": {},
    "CIRCUIT_BREAKER": {},
    "STAMPEDE": {},
    "TTL_JITTER": 0.1,
    "XFETCH_BETA": 0.0,
    "OUTBOX": False,
    "NAMESPACE": None,
    "STALENESS": {},
    "CDN_HEADER": None,
    "CDN_PURGE": None,
    "ADMIN_ACTION": True,
    "PROMETHEUS": True,
    "AUDIT": {},
    "EVENTS": None,
    "NEAR_CACHE": {},
    "REQUEST_CACHE": False,
    "ASYNC_MAX_CONNECTIONS": 4,
}

RETRY_DEFAULTS: dict[str, float] = {
    "ATTEMPTS": 3,
    "INITIAL_BACKOFF": 0.01,
    "MAX_BACKOFF": 0.2,
    "BUDGET": 1.0,
}


BREAKER_DEFAULTS: dict[str, float] = {"FAILURES": 5, "RESET_TIMEOUT": 5.0}


@dataclass(frozen=True)
class BreakerSettings:
    failures: int
    reset_timeout: float


STAMPEDE_DEFAULTS: dict[str, float] = {"LOCK_TTL": 30.0, "WAIT": 1.0, "POLL": 0.02}


@dataclass(frozen=True)
class StampedeSettings:
    lock_ttl: float
    wait: float
    poll: float


NEAR_CACHE_DEFAULTS: dict[str, Any] = {
    "ALIASES": [],
    "DEFAULT": True,
    "MAX_ENTRIES": 10_000,
    "MAX_BYTES": 64 * 1024 * 1024,
    "MAX_TTL": 300.0,
    "HEARTBEAT": 0.05,
    "MAX_LAG": 0.5,
    "REPLY_TIMEOUT": 1.0,
}


@dataclass(frozen=True)
class NearCacheSettings:
    aliases: tuple[str, ...]
    default: bool
    max_entries: int
    max_bytes: int
    max_ttl: float
    heartbeat: float
    max_lag: float
    reply_timeout: float


STALENESS_CLASSES: dict[str, float] = {"critical": 0, "important": 30, "best_effort": 600}


@dataclass(frozen=True)
class StalenessSettings:
    classes: dict[str, float]
    tags: dict[str, str]
    default: str


#: The longest duration a setting may give, in seconds (about 68 years): every TTL, in
#: milliseconds, stays an exact integer far below what Redis accepts.
MAX_SECONDS: Final = 2**31 - 1


def seconds(value: object, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    """``value`` as a finite number of seconds within [minimum, MAX_SECONDS] (> minimum if strict).

    inf, nan and numbers too large for a Redis TTL pass a plain ``< 0`` test and fail later, inside
    a request or after a commit: they are refused here, where the system check sees them.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < minimum
        or (strict and value == minimum)
        or value > MAX_SECONDS
    ):
        low = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ImproperlyConfigured(
            f"{name} must be a finite number of seconds {low} and <= {MAX_SECONDS}, not {value!r}."
        )
    return float(value)


AUDIT_DEFAULTS: dict[str, Any] = {
    "SAMPLE_RATE": 0.0,
    "COMPARE": None,
    "BUDGET": 1.0,
    "TARGET": 0.999,
    "QUEUE_SIZE": 100,
    "VERIFY_SAMPLES": 0,
    "LOG_INTERVAL": 60.0,
}


@dataclass(frozen=True)
class AuditSettings:
    """The stale-read auditor (docs/observability.md); not the purge audit log."""

    sample_rate: float
    compare: Callable[[Any, Any], bool] | None
    budget: float
    target: float
    queue_size: int
    verify_samples: int
    log_interval: float


def _audit_settings(given: object) -> AuditSettings:
    if not isinstance(given, dict) or set(given) - set(AUDIT_DEFAULTS):
        raise ImproperlyConfigured(
            f"TAGCACHE['AUDIT'] must be a dict with keys among {sorted(AUDIT_DEFAULTS)}, not {given!r}."
        )
    merged = {**AUDIT_DEFAULTS, **given}
    rate, target = merged["SAMPLE_RATE"], merged["TARGET"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ImproperlyConfigured(f"TAGCACHE['AUDIT']['SAMPLE_RATE'] must be in [0, 1], not {rate!r}.")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise ImproperlyConfigured(f"TAGCACHE['AUDIT']['TARGET'] must be in (0, 1], not {target!r}.")
    for name in ("QUEUE_SIZE", "VERIFY_SAMPLES"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
            raise ImproperlyConfigured(
                f"TAGCACHE['AUDIT'][{name!r}] must be an integer in [0, 100000], not {value!r}."
            )
    compare = merged["COMPARE"]
    if isinstance(compare, str):
        try:
            compare = import_string(compare)
        except ImportError as exc:
            raise ImproperlyConfigured(f"TAGCACHE['AUDIT']['COMPARE'] cannot be imported: {exc}") from exc
    if compare is not None and not callable(compare):
        raise ImproperlyConfigured(
            "TAGCACHE['AUDIT']['COMPARE'] must be a callable (or its dotted path) taking the value "
            f"served and the value recomputed, and returning True when they agree; not {compare!r}."
        )
    return AuditSettings(
        sample_rate=float(rate),
        compare=compare,
        budget=seconds(merged["BUDGET"], "TAGCACHE['AUDIT']['BUDGET']"),
        target=float(target),
        queue_size=merged["QUEUE_SIZE"],
        verify_samples=merged["VERIFY_SAMPLES"],
        log_interval=seconds(merged["LOG_INTERVAL"], "TAGCACHE['AUDIT']['LOG_INTERVAL']"),
    )


T = TypeVar("T")


class _Kept(Generic[T]):
    """A setting read on every write: its checked value is kept while ``settings.TAGCACHE`` is
    the same dict.

    Like a property, read from ``settings.TAGCACHE`` and checked at first use. Replacing the dict
    (``override_settings``, pytest-django's ``settings`` fixture, or a plain assignment, which
    sends no signal) makes every kept value read again; editing the dict in place does not.
    A value that fails its check is not kept: it raises on every read.
    """

    def __init__(self, read: Callable[[Settings], T]) -> None:
        self.read = read
        self.name = read.__name__
        self.__doc__ = read.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Settings] | None = None) -> _Kept[T]: ...
    @overload
    def __get__(self, obj: Settings, owner: type[Settings] | None = None) -> T: ...
    def __get__(self, obj: Settings | None, owner: type[Settings] | None = None) -> T | _Kept[T]:
        if obj is None:
            return self
        raw = getattr(settings, "TAGCACHE", None)
        kept = obj._kept
        if obj._kept_for is not raw:  # held below, so its id() cannot be reused meanwhile
            kept.clear()
            obj._kept_for = raw
        try:
            value: T = kept[self.name]
        except KeyError:
            value = kept[self.name] = self.read(obj)
        return value


class Settings:
    """Typed accessors over ``settings.TAGCACHE``; every key is optional."""

    def __init__(self) -> None:
        # The checked values of the settings every model write reads (see _Kept), and the
        # settings.TAGCACHE they were read from.
        self._kept: dict[str, Any] = {}
        self._kept_for: object = None

    @property
    def _raw(self) -> dict[str, Any]:
        # Annotated rather than cast(): typing.cast is a call, and this runs on every read.
        value: dict[str, Any] = getattr(settings, "TAGCACHE", {})
        if not isinstance(value, dict):
            raise ImproperlyConfigured("settings.TAGCACHE must be a dict.")
        return value

    def _get(self, name: str) -> Any:
        return self._raw.get(name, DEFAULTS[name])

    def _int(self, name: str, minimum: int) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_SECONDS:
            raise ImproperlyConfigured(
                f"TAGCACHE[{name!r}] must be an integer >= {minimum} and <= {MAX_SECONDS}, not {value!r}."
            )
        return value

    @_Kept
    def CACHE(self) -> str:
        value = self._get("CACHE")
        if not isinstance(value, str) or not value:
            raise ImproperlyConfigured(f"TAGCACHE['CACHE'] must name an alias in CACHES, not {value!r}.")
        return value

    @property
    def CACHES(self) -> tuple[str, ...] | None:
        """The cache aliases model writes invalidate besides ``CACHE``; None: the ones found in the
        settings (see :func:`django_tagcache.caching.stores.invalidated_aliases`)."""
        value = self._get("CACHES")
        if value is None:
            return None
        if (
            isinstance(value, str)
            or not isinstance(value, (list, tuple))
            or not all(isinstance(alias, str) and alias for alias in value)
        ):
            raise ImproperlyConfigured(
                f"TAGCACHE['CACHES'] must be a list of aliases in CACHES (or None), not {value!r}."
            )
        return tuple(value)

    @property
    def DEFAULT_TIMEOUT(self) -> float | None:
        value = self._get("DEFAULT_TIMEOUT")
        if value is None:
            return None
        # 0 or less means "do not store", as in Django: allowed, but finite.
        seconds(value, "TAGCACHE['DEFAULT_TIMEOUT'] (or None)", minimum=-MAX_SECONDS)
        return cast("float", value)

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
    def ASYNC_MAX_CONNECTIONS(self) -> int:
        return self._int("ASYNC_MAX_CONNECTIONS", 1)

    @property
    def GENERATION_TTL(self) -> int:
        return self._int("GENERATION_TTL", 1)

    @property
    def PRUNE_PER_WRITE(self) -> int:
        return self._int("PRUNE_PER_WRITE", 1)

    @property
    def TOMBSTONE_TTL(self) -> int:
        """Redis Cluster: seconds a removed entry's tombstone lives (see docs/cluster.md)."""
        return self._int("TOMBSTONE_TTL", 1)

    @_Kept
    def CLOCK_SKEW_MARGIN(self) -> float:
        """Seconds by which an application clock may run ahead of Redis' (read fences, docs/concepts.md)."""
        value = self._get("CLOCK_SKEW_MARGIN")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 60:
            raise ImproperlyConfigured(
                f"TAGCACHE['CLOCK_SKEW_MARGIN'] must be a number of seconds in [0, 60], not {value!r}."
            )
        return float(value)

    @property
    def DRAIN_GUARD_TTL(self) -> int:
        """Seconds writes wait at most for an invalidation that is still draining (a crashed one)."""
        return self._int("DRAIN_GUARD_TTL", 1)

    @property
    def INVALIDATION_REPLICAS(self) -> int:
        """Replicas that must hold an invalidation before it returns (Sentinel, docs/concepts.md)."""
        return self._int("INVALIDATION_REPLICAS", 0)

    @property
    def INVALIDATION_REPLICA_TIMEOUT(self) -> float:
        value = self._get("INVALIDATION_REPLICA_TIMEOUT")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
            raise ImproperlyConfigured(
                f"TAGCACHE['INVALIDATION_REPLICA_TIMEOUT'] must be seconds in (0, 60], not {value!r}."
            )
        return float(value)

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
            seconds(merged[name], f"TAGCACHE['RETRY'][{name!r}]")
        return RetrySettings(
            attempts=int(attempts),
            initial_backoff=float(merged["INITIAL_BACKOFF"]),
            max_backoff=float(merged["MAX_BACKOFF"]),
            budget=float(merged["BUDGET"]),
        )

    @property
    def CDN_HEADER(self) -> str | None:
        value = self._get("CDN_HEADER")
        if value not in (None, "Surrogate-Key", "Cache-Tag"):
            raise ImproperlyConfigured(
                f"TAGCACHE['CDN_HEADER'] must be None, 'Surrogate-Key' or 'Cache-Tag', not {value!r}."
            )
        return value  # type: ignore[no-any-return]

    @property
    def CDN_PURGE(self) -> Callable[[tuple[str, ...]], object] | None:
        value = self._get("CDN_PURGE")
        if value is None or callable(value):
            return cast("Callable[[tuple[str, ...]], object] | None", value)
        try:
            hook = import_string(value) if isinstance(value, str) else None
        except ImportError as exc:
            raise ImproperlyConfigured(f"TAGCACHE['CDN_PURGE'] cannot be imported: {exc}") from exc
        if not callable(hook):
            raise ImproperlyConfigured(
                f"TAGCACHE['CDN_PURGE'] must be a dotted path to a callable taking the tags, not {value!r}."
            )
        return cast("Callable[[tuple[str, ...]], object]", hook)

    @property
    def CIRCUIT_BREAKER(self) -> BreakerSettings:
        given = self._get("CIRCUIT_BREAKER")
        if not isinstance(given, dict) or set(given) - set(BREAKER_DEFAULTS):
            raise ImproperlyConfigured(
                f"TAGCACHE['CIRCUIT_BREAKER'] must be a dict with keys among {sorted(BREAKER_DEFAULTS)}, "
                f"not {given!r}."
            )
        merged = {**BREAKER_DEFAULTS, **given}
        failures, reset = merged["FAILURES"], merged["RESET_TIMEOUT"]
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise ImproperlyConfigured("TAGCACHE['CIRCUIT_BREAKER']['FAILURES'] must be an integer >= 0.")
        seconds(reset, "TAGCACHE['CIRCUIT_BREAKER']['RESET_TIMEOUT']", strict=True)
        return BreakerSettings(failures=failures, reset_timeout=float(reset))

    @property
    def STAMPEDE(self) -> StampedeSettings:
        given = self._get("STAMPEDE")
        if not isinstance(given, dict) or set(given) - set(STAMPEDE_DEFAULTS):
            raise ImproperlyConfigured(
                f"TAGCACHE['STAMPEDE'] must be a dict with keys among {sorted(STAMPEDE_DEFAULTS)}, "
                f"not {given!r}."
            )
        merged = {**STAMPEDE_DEFAULTS, **given}
        for name, value in merged.items():
            seconds(value, f"TAGCACHE['STAMPEDE'][{name!r}]", strict=name == "POLL")
        return StampedeSettings(float(merged["LOCK_TTL"]), float(merged["WAIT"]), float(merged["POLL"]))

    @property
    def TTL_JITTER(self) -> float:
        value = self._get("TTL_JITTER")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ImproperlyConfigured(f"TAGCACHE['TTL_JITTER'] must be a fraction in [0, 1), not {value!r}.")
        return float(value)

    @property
    def XFETCH_BETA(self) -> float:
        value = self._get("XFETCH_BETA")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ImproperlyConfigured(
                f"TAGCACHE['XFETCH_BETA'] must be a finite number >= 0, not {value!r}."
            )
        return float(value)

    def _bool(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise ImproperlyConfigured(f"TAGCACHE[{name!r}] must be True or False, not {value!r}.")
        return value

    @property
    def ADMIN_ACTION(self) -> bool:
        """Give every tagged model's admin the "Purge cached data" action (read at start-up)."""
        return self._bool("ADMIN_ACTION")

    @property
    def PROMETHEUS(self) -> bool:
        """Export the metrics to prometheus-client's registry when it is installed (read at start-up)."""
        return self._bool("PROMETHEUS")

    @_Kept
    def NAMESPACE(self) -> str | None:
        value = self._get("NAMESPACE")
        if value is not None and (not isinstance(value, str) or not value):
            raise ImproperlyConfigured(
                f"TAGCACHE['NAMESPACE'] must be the dotted path of a callable, or None, not {value!r}."
            )
        return value

    @property
    def STALENESS(self) -> StalenessSettings:
        given = self._get("STALENESS")
        if not isinstance(given, dict) or set(given) - {"CLASSES", "TAGS", "DEFAULT"}:
            raise ImproperlyConfigured(
                f"TAGCACHE['STALENESS'] must be a dict with keys among CLASSES, TAGS, DEFAULT, not {given!r}."
            )
        extra = given.get("CLASSES", {})
        if not isinstance(extra, dict) or not all(isinstance(name, str) and name for name in extra):
            raise ImproperlyConfigured(
                f"TAGCACHE['STALENESS']['CLASSES'] must map class names to seconds, not {extra!r}."
            )
        classes = {**STALENESS_CLASSES, **extra}
        for name, budget in classes.items():
            seconds(budget, f"Staleness class {name!r} in TAGCACHE['STALENESS']['CLASSES']")
        tags = given.get("TAGS", {})
        default = given.get("DEFAULT", "critical")
        if not isinstance(tags, dict) or not all(isinstance(p, str) and p for p in tags):
            raise ImproperlyConfigured("TAGCACHE['STALENESS']['TAGS'] must map tag prefixes to class names.")
        for name in [default, *tags.values()]:
            if name not in classes:
                raise ImproperlyConfigured(
                    f"Unknown staleness class {name!r} in TAGCACHE['STALENESS']; "
                    f"known: {', '.join(sorted(classes))}."
                )
        return StalenessSettings(classes=classes, tags=dict(tags), default=default)

    @_Kept
    def OUTBOX(self) -> bool:
        value = self._get("OUTBOX")
        if not isinstance(value, bool):
            raise ImproperlyConfigured(f"TAGCACHE['OUTBOX'] must be True or False, not {value!r}.")
        return value

    @property
    def AUDIT(self) -> AuditSettings:
        """The stale-read auditor: shadow reads, ``tagcache_verify``, the SLO report."""
        return _audit_settings(self._get("AUDIT"))

    @property
    def EVENTS(self) -> EventsSettings | None:
        """Cross-service events (docs/events.md): None when off."""
        return _events(self._get("EVENTS"))

    @property
    def NEAR_CACHE(self) -> NearCacheSettings:
        """The near cache (L1) in front of Redis, per alias: see docs/near-cache.md."""
        given = self._get("NEAR_CACHE")
        if not isinstance(given, dict) or set(given) - set(NEAR_CACHE_DEFAULTS):
            raise ImproperlyConfigured(
                f"TAGCACHE['NEAR_CACHE'] must be a dict with keys among {sorted(NEAR_CACHE_DEFAULTS)}, "
                f"not {given!r}."
            )
        merged = {**NEAR_CACHE_DEFAULTS, **given}
        aliases = merged["ALIASES"]
        if not isinstance(aliases, (list, tuple)) or not all(isinstance(a, str) and a for a in aliases):
            raise ImproperlyConfigured(
                f"TAGCACHE['NEAR_CACHE']['ALIASES'] must be a list of cache aliases, not {aliases!r}."
            )
        if not isinstance(merged["DEFAULT"], bool):
            raise ImproperlyConfigured("TAGCACHE['NEAR_CACHE']['DEFAULT'] must be True or False.")
        for name in ("MAX_ENTRIES", "MAX_BYTES"):
            value = merged[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImproperlyConfigured(f"TAGCACHE['NEAR_CACHE'][{name!r}] must be an integer >= 1.")
        for name in ("MAX_TTL", "HEARTBEAT", "MAX_LAG", "REPLY_TIMEOUT"):
            seconds(merged[name], f"TAGCACHE['NEAR_CACHE'][{name!r}]", strict=True)
        if merged["HEARTBEAT"] >= merged["MAX_LAG"]:
            raise ImproperlyConfigured(
                "TAGCACHE['NEAR_CACHE']['HEARTBEAT'] must be shorter than MAX_LAG, or L1 would never serve."
            )
        return NearCacheSettings(
            aliases=tuple(aliases),
            default=merged["DEFAULT"],
            max_entries=merged["MAX_ENTRIES"],
            max_bytes=merged["MAX_BYTES"],
            max_ttl=float(merged["MAX_TTL"]),
            heartbeat=float(merged["HEARTBEAT"]),
            max_lag=float(merged["MAX_LAG"]),
            reply_timeout=float(merged["REPLY_TIMEOUT"]),
        )

    @property
    def REQUEST_CACHE(self) -> bool:
        """Read each entry from Redis at most once per request (L0): see docs/near-cache.md."""
        return self._bool("REQUEST_CACHE")

    def unknown_keys(self) -> list[str]:
        """Keys in settings.TAGCACHE that this version does not know (reported by a system check)."""
        return sorted(set(self._raw) - set(DEFAULTS))


# --- TAGCACHE["EVENTS"]: cross-service invalidation events (docs/events.md) -------------------------

EVENTS_DEFAULTS: dict[str, Any] = {
    "SERVICE": None,  # required
    "REGION": "default",
    "PUBLISH": True,
    "STREAM": "tagcache:events",
    "MAXLEN": 100_000,
    "SOURCES": {},
    "GROUP": None,  # default: SERVICE
    "BATCH": 500,
    "RATE_LIMIT": 0,
    "MAX_ATTEMPTS": 5,
    "CLAIM_IDLE": 30,
    "BLOCK": 1.0,
    "DEAD_CONSUMER_IDLE": 3600,
}
SOURCE_KEYS = ("URL", "STREAM", "CLUSTER", "DEAD_LETTER")


@dataclass(frozen=True)
class EventSource:
    """A stream of another service to consume: where it is, and its dead-letter stream."""

    name: str
    url: str
    stream: str
    cluster: bool
    dead_letter: str


@dataclass(frozen=True)
class EventsSettings:
    service: str
    region: str
    publish: bool
    stream: str
    maxlen: int
    sources: dict[str, EventSource]
    group: str
    batch: int
    rate_limit: float
    max_attempts: int
    claim_idle: float
    block: float
    dead_consumer_idle: float = 3600.0


def _event_name(value: object, name: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise ImproperlyConfigured(
            f"TAGCACHE['EVENTS'][{name!r}] must be 1-64 letters, digits, '_', '.' or '-', not {value!r}."
        )
    return value


def _stream_name(value: object, name: str) -> str:
    # No braces: the counters' key wraps the stream's name in braces to share its Cluster slot.
    if not isinstance(value, str) or not value or len(value) > 200 or re.search(r"[\s{}]", value):
        raise ImproperlyConfigured(
            f"{name} must be a stream key of 1-200 characters without spaces or braces, not {value!r}."
        )
    return value


def _events(given: object) -> EventsSettings | None:
    if given is None:
        return None
    if not isinstance(given, dict) or set(given) - set(EVENTS_DEFAULTS):
        raise ImproperlyConfigured(
            f"TAGCACHE['EVENTS'] must be None or a dict with keys among {sorted(EVENTS_DEFAULTS)}, "
            f"not {given!r}."
        )
    merged = {**EVENTS_DEFAULTS, **given}
    if merged["SERVICE"] is None:
        raise ImproperlyConfigured("TAGCACHE['EVENTS']['SERVICE'] is required: the name of this service.")
    service = _event_name(merged["SERVICE"], "SERVICE")
    if not isinstance(merged["PUBLISH"], bool):
        raise ImproperlyConfigured(
            f"TAGCACHE['EVENTS']['PUBLISH'] must be True or False, not {merged['PUBLISH']!r}."
        )
    integers = {}
    for name, low in (("MAXLEN", 1), ("BATCH", 1), ("MAX_ATTEMPTS", 1)):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 10**9:
            raise ImproperlyConfigured(
                f"TAGCACHE['EVENTS'][{name!r}] must be an integer >= {low} and <= 10**9, not {value!r}."
            )
        integers[name] = value
    rate = seconds(merged["RATE_LIMIT"], "TAGCACHE['EVENTS']['RATE_LIMIT'] (events per second, 0: no limit)")
    claim_idle = seconds(merged["CLAIM_IDLE"], "TAGCACHE['EVENTS']['CLAIM_IDLE']", strict=True)
    block = seconds(merged["BLOCK"], "TAGCACHE['EVENTS']['BLOCK']", strict=True)
    dead_consumer_idle = seconds(
        merged["DEAD_CONSUMER_IDLE"], "TAGCACHE['EVENTS']['DEAD_CONSUMER_IDLE']", strict=True
    )
    if dead_consumer_idle <= block:
        raise ImproperlyConfigured(
            "TAGCACHE['EVENTS']['DEAD_CONSUMER_IDLE'] must be longer than BLOCK (a consumer waiting "
            f"on a read looks idle that long), not {dead_consumer_idle!r}."
        )
    if block > 60:
        raise ImproperlyConfigured(f"TAGCACHE['EVENTS']['BLOCK'] must be at most 60 seconds, not {block!r}.")
    sources = merged["SOURCES"]
    if not isinstance(sources, dict):
        raise ImproperlyConfigured(f"TAGCACHE['EVENTS']['SOURCES'] must map names to dicts, not {sources!r}.")
    parsed = {}
    for name, source in sources.items():
        where = f"TAGCACHE['EVENTS']['SOURCES'][{name!r}]"
        _event_name(name, "SOURCES")
        if not isinstance(source, dict) or set(source) - set(SOURCE_KEYS) or "URL" not in source:
            raise ImproperlyConfigured(
                f"{where} must be a dict with 'URL' and optionally "
                f"{', '.join(SOURCE_KEYS[1:])}, not {source!r}."
            )
        url = source["URL"]
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ImproperlyConfigured(
                f"{where}['URL'] must be a redis://, rediss:// or unix:// URL, not {url!r}."
            )
        stream = _stream_name(source.get("STREAM", "tagcache:events"), f"{where}['STREAM']")
        cluster = source.get("CLUSTER", False)
        if not isinstance(cluster, bool):
            raise ImproperlyConfigured(f"{where}['CLUSTER'] must be True or False, not {cluster!r}.")
        dead = _stream_name(source.get("DEAD_LETTER", stream + ":dead"), f"{where}['DEAD_LETTER']")
        if dead == stream:
            raise ImproperlyConfigured(f"{where}['DEAD_LETTER'] must differ from its STREAM.")
        parsed[name] = EventSource(name, url, stream, cluster, dead)
    return EventsSettings(
        service=service,
        region=_event_name(merged["REGION"], "REGION"),
        publish=merged["PUBLISH"],
        stream=_stream_name(merged["STREAM"], "TAGCACHE['EVENTS']['STREAM']"),
        maxlen=integers["MAXLEN"],
        sources=parsed,
        group=_event_name(merged["GROUP"] if merged["GROUP"] is not None else service, "GROUP"),
        batch=integers["BATCH"],
        rate_limit=rate,
        max_attempts=integers["MAX_ATTEMPTS"],
        claim_idle=claim_idle,
        block=block,
        dead_consumer_idle=dead_consumer_idle,
    )


conf = Settings()
