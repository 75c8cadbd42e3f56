"""Tag sources -> tag strings, and what makes a tag valid.

A tag is a non-empty string of at most ``TAGCACHE['MAX_TAG_LENGTH']`` characters with no
whitespace or control characters. Every other character is literal: tags are never used as
patterns, so ``*``, ``?`` or ``[`` in a tag match only themselves.

Other packages (the ORM integration of this app, or a project's own code) teach the
normalisation new kinds of source with :func:`register_resolver`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

from ..conf import conf

# Whitespace separates tags in templates and CDN headers; control characters and lone surrogates
# cannot travel through those, and surrogates cannot even be encoded for Redis.
_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")

Resolver = Callable[[Any], "Iterable[str] | None"]

# Resolvers registered by AppConfig.ready(); process-global because tag sources are types,
# not settings. ``_reset_resolvers`` exists for tests.
_resolvers: list[Resolver] = []


def register_resolver(resolver: Resolver) -> None:
    """Teach tag normalisation a new kind of source.

    ``resolver(obj)`` returns the tags of ``obj``, or None when it does not handle that object.
    Registering the same function twice has no effect.
    """
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def _reset_resolvers(resolvers: list[Resolver] | None = None) -> list[Resolver]:
    previous = list(_resolvers)
    _resolvers[:] = resolvers or []
    return previous


def validate_tag(tag: object) -> str:
    """Return ``tag`` if it is a valid tag string, else raise TypeError or ValueError."""
    if not isinstance(tag, str):
        raise TypeError(f"A cache tag must be a string, not {type(tag).__name__}: {tag!r}.")
    if not tag:
        raise ValueError("A cache tag cannot be empty.")
    limit = conf.MAX_TAG_LENGTH
    if len(tag) > limit:
        raise ValueError(f"Cache tag {tag[:40]!r}... is {len(tag)} characters long; the limit is {limit}.")
    bad = _FORBIDDEN.search(tag)
    if bad:
        words = tag.split()
        if bad.group().isspace() and len(words) > 1 and not _FORBIDDEN.search("".join(words)):
            # Templates split tags="a b" into two tags; Python calls never guess: one string, one tag.
            raise ValueError(
                f"Cache tag {tag!r} contains {bad.group()!r}: tags cannot hold whitespace or control "
                f"characters. To give several tags, pass a list: {words!r} (a string is one tag in Python "
                "calls; only the tags= of {% tagcache %} splits on spaces)."
            )
        raise ValueError(
            f"Cache tag {tag!r} contains {bad.group()!r}: tags cannot hold whitespace or control characters."
        )
    return tag


def all_valid(tags: Collection[str]) -> bool:
    """Whether every string of ``tags`` is a valid tag: :func:`validate_tag` for many tags at once,
    without saying which one is not (ask :func:`validate_tag` for that)."""
    if not tags:
        return True
    return (
        min(map(len, tags)) > 0
        and max(map(len, tags)) <= conf.MAX_TAG_LENGTH
        and not _FORBIDDEN.search("".join(tags))
    )


def _resolve(source: object) -> Iterable[str] | None:
    for resolver in _resolvers:
        resolved = resolver(source)
        if resolved is not None:
            return resolved
    return None


def _collect(source: object, into: set[str]) -> None:
    if isinstance(source, str):
        into.add(validate_tag(source))
        return
    resolved = _resolve(source)
    if resolved is not None:
        for tag in resolved:
            into.add(validate_tag(tag))
        return
    if isinstance(source, (list, tuple, set, frozenset)):
        for item in source:
            _collect(item, into)
        return
    raise TypeError(
        f"Cannot use {type(source).__name__} as a cache tag: pass a string, a model instance, "
        f"a model class, a queryset, or a list of those (got {source!r})."
    )


def normalize_tags(sources: object) -> tuple[str, ...]:
    """Turn one tag source, or a list of them, into a sorted tuple of distinct tag strings.

    ``None`` means "no tags". A string is one tag (never split: a string with spaces is refused,
    with a message saying to pass a list; only the ``tags=`` of ``{% tagcache %}`` splits).
    Lists, tuples and sets may nest. Anything else must be understood by a registered resolver,
    else TypeError. Invalid tags raise ValueError. Nothing here touches Redis.
    """
    if sources is None:
        return ()
    if isinstance(sources, str):
        return (validate_tag(sources),)
    found: set[str] = set()
    _collect(sources, found)
    return tuple(sorted(found))
