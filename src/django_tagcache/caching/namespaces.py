"""Namespaces: every key and tag of one tenant (or site, or test run) under its own prefix.

``TAGCACHE['NAMESPACE']`` is the dotted path of a callable returning the current namespace (for
example the tenant of the request) or None for none. A namespace is 1 to 64 characters among
letters, digits, ``_``, ``.`` and ``-``: no separator of the key layout, so neither a namespace nor
a tag can address another namespace's keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from django.utils.module_loading import import_string

from ..conf import conf

_VALID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_UNSET = "\x00unset"
# Set by ``in_namespace()``: the outbox replaying a row, or a purge over every namespace.
_override: ContextVar[str | None] = ContextVar("django_tagcache_namespace", default=_UNSET)
# TAGCACHE['NAMESPACE'] as last read (_UNSET: not read since the settings changed). Every key is
# built through current(), an L1 hit included: the setting is read once per settings change
# (reset() runs on Django's setting_changed, see apps.py), not on every key.
_configured: str | None = _UNSET


def validate(namespace: object) -> str | None:
    """``namespace`` if valid (None means "no namespace"), else ValueError/TypeError."""
    if namespace is None:
        return None
    if not isinstance(namespace, str):
        raise TypeError(f"A cache namespace must be a string or None, not {type(namespace).__name__}.")
    if not _VALID.fullmatch(namespace):
        raise ValueError(
            f"Cache namespace {namespace!r} is invalid: use 1 to 64 letters, digits, '_', '.' or '-'."
        )
    return namespace


@lru_cache(maxsize=8)
def _resolve(path: str) -> Callable[[], object]:
    resolved: Callable[[], object] = import_string(path)
    return resolved


def current() -> str | None:
    """The namespace keys are built in right now."""
    override = _override.get()
    if override != _UNSET:
        return override
    path = _configured
    if path == _UNSET:
        path = _read_setting()
    if path is None:
        return None
    return validate(_resolve(path)())


def _read_setting() -> str | None:
    global _configured
    _configured = path = conf.NAMESPACE  # ImproperlyConfigured propagates, and nothing is kept
    return path


def reset() -> None:
    """The settings changed: read ``TAGCACHE['NAMESPACE']`` again at the next key."""
    global _configured
    _configured = _UNSET


@contextmanager
def in_namespace(namespace: str | None) -> Iterator[None]:
    """Build keys in ``namespace`` inside the block, whatever ``TAGCACHE['NAMESPACE']`` says."""
    token = _override.set(validate(namespace))
    try:
        yield
    finally:
        _override.reset(token)
