"""CDN surrogate keys: the page's tags in a response header, and the keys to purge when tags are invalidated.

``TAGCACHE['CDN_HEADER']`` (``"Surrogate-Key"`` for Fastly/Varnish, ``"Cache-Tag"`` for
Cloudflare) makes cached pages carry their tags; ``TAGCACHE['CDN_PURGE']`` names a callable that
receives the tags of every invalidation. Both sides use the same transformation, so a purge
reaches every page whose header was built from a purged tag:

- a tag is its own key if it is printable ASCII, at most :data:`MAX_KEY` characters and holds
  no separator (a comma, for ``Cache-Tag``); any other tag is ``tc-h:`` plus 32 hex digits of
  its SHA-256;
- if the keys do not fit in :data:`MAX_HEADER` bytes, every tag ``family:rest`` is replaced by
  ``tc-f:family`` (so ``shop.product:42`` becomes ``tc-f:shop.product``), deduplicated;
- if that is still too long, every tag is replaced by one of 256 bucket keys ``tc-b:xx`` (two
  hex digits of its SHA-256), which always fits.

:func:`purge_keys` therefore returns, for each tag, its key, its family key and its bucket key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any, Final

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .conf import conf
from .signals import tags_invalidated

logger = logging.getLogger("django_tagcache")

#: Longest tag used as a key as is; longer ones are hashed (CDNs allow 1 KB, shorter keeps more in a header).
MAX_KEY: Final = 128
#: Longest header value, in bytes: under the 16 KB both Fastly and Cloudflare accept.
MAX_HEADER: Final = 16_000

SURROGATE_KEY: Final = "Surrogate-Key"
CACHE_TAG: Final = "Cache-Tag"
_PURGE_UID: Final = "django_tagcache.cdn.purge"


def _header(header: str | None) -> str:
    header = header or conf.CDN_HEADER or SURROGATE_KEY
    if header not in (SURROGATE_KEY, CACHE_TAG):
        raise ValueError(f"Unknown CDN header {header!r}; use {SURROGATE_KEY!r} or {CACHE_TAG!r}.")
    return header


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _key(text: str, header: str) -> str:
    if (
        len(text) <= MAX_KEY
        and text.isascii()
        and text.isprintable()
        and " " not in text
        and not (header == CACHE_TAG and "," in text)
    ):
        return text
    return "tc-h:" + _digest(text)[:32]


def _family_key(tag: str, header: str) -> str | None:
    family, colon, _rest = tag.partition(":")
    return _key("tc-f:" + family, header) if colon and family else None


def _bucket_key(tag: str) -> str:
    return "tc-b:" + _digest(tag)[:2]


def tag_key(tag: str, header: str | None = None) -> str:
    """The key of one tag when the header has room for every tag's own key."""
    return _key(tag, _header(header))


def header_keys(tags: Iterable[str], header: str | None = None) -> tuple[str, ...]:
    """The keys a page with ``tags`` carries in ``header`` (default: ``CDN_HEADER``), within the limits."""
    header = _header(header)
    separator = 1
    tags = sorted(set(tags))
    keys = sorted({_key(tag, header) for tag in tags})
    if sum(len(key) + separator for key in keys) - separator <= MAX_HEADER:
        return tuple(keys)
    keys = sorted({_family_key(tag, header) or _key(tag, header) for tag in tags})
    if sum(len(key) + separator for key in keys) - separator <= MAX_HEADER:
        return tuple(keys)
    return tuple(sorted({_bucket_key(tag) for tag in tags}))


def header_value(tags: Iterable[str], header: str | None = None) -> str:
    """The value of ``header`` for a page with ``tags``: keys separated by spaces, or commas for Cache-Tag."""
    header = _header(header)
    return ("," if header == CACHE_TAG else " ").join(header_keys(tags, header))


def purge_keys(tags: Iterable[str], header: str | None = None) -> tuple[str, ...]:
    """Every key to purge at the CDN so that each page built from any of ``tags`` is purged.

    Whatever fallback a page's header needed, it carries one of these keys for each of its tags.
    """
    header = _header(header)
    keys: set[str] = set()
    for tag in tags:
        keys.add(_key(tag, header))
        keys.add(_bucket_key(tag))
        family = _family_key(tag, header)
        if family is not None:
            keys.add(family)
    return tuple(sorted(keys))


def install() -> None:
    """Call ``CDN_PURGE`` after every invalidation when it is set, now and whenever settings change.

    Called from ``AppConfig.ready()``.
    """
    setting_changed.connect(_settings_changed, dispatch_uid="django_tagcache.cdn.settings")
    _connect_purge()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "TAGCACHE":
        _connect_purge()


def _connect_purge() -> None:
    try:
        hook = conf.CDN_PURGE
    except ImproperlyConfigured:
        hook = None  # reported by the system check E001
    if hook is None:
        tags_invalidated.disconnect(dispatch_uid=_PURGE_UID)
    else:
        tags_invalidated.connect(_purge, dispatch_uid=_PURGE_UID)


def _purge(sender: object, *, tags: tuple[str, ...], **kwargs: Any) -> None:
    # Runs inside invalidate_tags(), after Redis has confirmed: a CDN failure must not turn a
    # completed invalidation into an exception for the caller, so it is logged instead.
    try:
        hook = conf.CDN_PURGE
        if hook is not None:
            hook(tuple(tags))
    except Exception:
        logger.exception("django-tagcache: CDN_PURGE failed for %d tag(s): %s", len(tags), tags[:20])
