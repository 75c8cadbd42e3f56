"""CDN surrogate keys: the page's tags in a response header, and the keys to purge when tags are invalidated.

``TAGCACHE['CDN_HEADER']`` (``"Surrogate-Key"`` for Fastly/Varnish, ``"Cache-Tag"`` for
Cloudflare) makes cached pages carry their tags; ``TAGCACHE['CDN_PURGE']`` names a callable that
receives the tags of every invalidation. Both sides use the same transformation, so a purge
reaches every page whose header was built from a purged tag:

- a tag is its own key if it is printable ASCII, at most :data:`MAX_KEY` characters, holds no
  separator (a comma, for ``Cache-Tag``) and does not start with ``tc-`` in any case; any other
  tag is ``tc-h:`` plus 32 hex digits of its SHA-256. Keys starting with ``tc-`` are therefore
  only ever generated here: a tag cannot spell another tag's family or bucket key;
- if the keys do not fit in :data:`MAX_HEADER` bytes, every tag ``family:rest`` is replaced by
  ``tc-f:family`` (so ``shop.product:42`` becomes ``tc-f:shop.product``), deduplicated;
- if that is still too long, every tag is replaced by one of 256 bucket keys ``tc-b:xx`` (two
  hex digits of its SHA-256), which always fits;
- in a namespace (``TAGCACHE['NAMESPACE']``), every key is prefixed with ``tc-n:<namespace>:``,
  so a purge in one namespace names no key of another (for ``Cache-Tag``, which Cloudflare
  compares without case, a namespace with capitals is written ``~`` plus 16 hex digits of its
  SHA-256, so ``Acme`` and ``acme`` stay apart).

:func:`purge_keys` therefore returns, for each tag, its key, its family key and its bucket key,
in the namespace current when it is called (inside ``CDN_PURGE``: the invalidation's).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from typing import Any, Final

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from ..caching import namespaces
from ..conf import conf
from ..signals import tags_invalidated

logger = logging.getLogger("django_tagcache")

#: Longest tag used as a key as is; longer ones are hashed (CDNs allow 1 KB, shorter keeps more in a header).
MAX_KEY: Final = 128
#: Longest header value, in bytes: under the 16 KB both Fastly and Cloudflare accept.
MAX_HEADER: Final = 16_000

SURROGATE_KEY: Final = "Surrogate-Key"
CACHE_TAG: Final = "Cache-Tag"
_PURGE_UID: Final = "django_tagcache.web.cdn.purge"
# Keys starting with this, in any case, are generated here; a tag spelled so is hashed.
_RESERVED: Final = "tc-"


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
        and text[:3].lower() != _RESERVED
    ):
        return text
    return "tc-h:" + _digest(text)[:32]


def _family_key(tag: str) -> str | None:
    family, colon, _rest = tag.partition(":")
    if not (colon and family):
        return None
    # Generated, so it may start with tc- (only _key() keeps tags out of that space).
    if len(family) <= MAX_KEY and family.isascii() and family.isprintable() and " " not in family:
        return "tc-f:" + family if "," not in family else "tc-f:" + _digest(family)[:32]
    return "tc-f:" + _digest(family)[:32]


def _bucket_key(tag: str) -> str:
    return "tc-b:" + _digest(tag)[:2]


def _prefix(namespace: str | None, header: str) -> str:
    """What every key of ``namespace`` starts with ("" for no namespace)."""
    if namespace is None:
        return ""
    if header == CACHE_TAG and namespace != namespace.lower():
        return f"tc-n:~{_digest(namespace)[:16]}:"
    return f"tc-n:{namespace}:"


def _namespace(namespace: str | _Current | None) -> str | None:
    return namespaces.current() if isinstance(namespace, _Current) else namespace


class _Current:
    """The default namespace argument: the namespace current at the call."""

    def __repr__(self) -> str:
        return "CURRENT"  # how signatures (and the API reference) show the default


CURRENT: Final = _Current()


def tag_key(tag: str, header: str | None = None, namespace: str | _Current | None = CURRENT) -> str:
    """The key of one tag when the header has room for every tag's own key."""
    header = _header(header)
    return _prefix(_namespace(namespace), header) + _key(tag, header)


def header_keys(
    tags: Iterable[str], header: str | None = None, namespace: str | _Current | None = CURRENT
) -> tuple[str, ...]:
    """The keys a page with ``tags`` carries in ``header`` (default: ``CDN_HEADER``), within the limits.

    ``namespace`` is the page's (default: the current one).
    """
    header = _header(header)
    prefix = _prefix(_namespace(namespace), header)
    separator = 1
    tags = sorted(set(tags))
    keys = sorted({prefix + _key(tag, header) for tag in tags})
    if sum(len(key) + separator for key in keys) - separator <= MAX_HEADER:
        return tuple(keys)
    keys = sorted({prefix + (_family_key(tag) or _key(tag, header)) for tag in tags})
    if sum(len(key) + separator for key in keys) - separator <= MAX_HEADER:
        return tuple(keys)
    return tuple(sorted({prefix + _bucket_key(tag) for tag in tags}))


def header_value(
    tags: Iterable[str], header: str | None = None, namespace: str | _Current | None = CURRENT
) -> str:
    """The value of ``header`` for a page with ``tags``: keys separated by spaces, or commas for Cache-Tag."""
    header = _header(header)
    return ("," if header == CACHE_TAG else " ").join(header_keys(tags, header, namespace))


def purge_keys(
    tags: Iterable[str], header: str | None = None, namespace: str | _Current | None = CURRENT
) -> tuple[str, ...]:
    """Every key to purge at the CDN so that each page built from any of ``tags`` is purged.

    Whatever fallback a page's header needed, it carries one of these keys for each of its tags.
    Only pages of ``namespace`` (default: the current one, the invalidation's inside
    ``CDN_PURGE``) are named.
    """
    header = _header(header)
    prefix = _prefix(_namespace(namespace), header)
    keys: set[str] = set()
    for tag in tags:
        keys.add(prefix + _key(tag, header))
        keys.add(prefix + _bucket_key(tag))
        family = _family_key(tag)
        if family is not None:
            keys.add(prefix + family)
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
