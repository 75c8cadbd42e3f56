"""Every Redis key this app writes, built from the cache backend's ``make_key``.

See :mod:`django_tagcache.core.store` for the layout. Keys depend on the current namespace (asked on
every call) and stay readable: the tag appears as is, between the braces that pin all of a tag's
keys to one Redis Cluster hash slot.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

MakeKey = Callable[[str, "int | None"], str]


def hash_tag(tag: str) -> str:
    """What goes between the braces of a tag's keys, so that they all share one cluster slot.

    Redis hashes a whole key when its first ``{...}`` is empty, as ``{}}`` would be for the tag
    ``}``; a space, which no tag may contain, fills such braces without two tags meeting.
    """
    return " " + tag if tag.startswith("}") else tag


class KeyScheme:
    """Builds every Redis key from the cache backend's ``make_key`` (KEY_PREFIX, VERSION, KEY_FUNCTION)."""

    def __init__(
        self, make_key: MakeKey, prefix: str, namespace: Callable[[], str | None] | None = None
    ) -> None:
        self._make_key = make_key
        self._prefix = prefix
        self._entry = f"{prefix}:e:"
        self._tag = f"{prefix}:t:"
        # The namespace is asked on every key: it may change with each request (a tenant).
        self._namespace = namespace
        # Hot tags (model tags, popular instances) recur on every write: remember their keys;
        # and hot entries on every read.
        self._tags: dict[tuple[str | None, str], str] = {}
        self._entries: dict[tuple[str | None, str, int | None], str] = {}

    def namespace(self) -> str | None:
        return self._namespace() if self._namespace is not None else None

    def entry(self, key: str, version: int | None = None) -> str:
        namespace = self._namespace() if self._namespace is not None else None  # every read: inlined
        found = self._entries.get((namespace, key, version))
        return self._new_entry(namespace, key, version) if found is None else found

    def _new_entry(self, namespace: str | None, key: str, version: int | None) -> str:
        if len(self._entries) >= 10_000:
            self._entries.clear()
        if namespace is None:
            made = str(self._make_key(self._entry + key, version))
        else:
            made = str(self._make_key(f"{self._prefix}:n:{namespace}:e:{key}", version))
        self._entries[namespace, key, version] = made
        return made

    def tag(self, tag: str) -> str:
        """The base every key of ``tag`` starts with; the braces pin them to one cluster slot."""
        namespace = self.namespace()
        base = self._tags.get((namespace, tag))
        return self._new_tag(namespace, tag) if base is None else base

    def tags(self, tags: Sequence[str]) -> list[str]:
        """:meth:`tag` of each of ``tags``, the namespace asked once for all of them."""
        namespace = self.namespace()
        known = self._tags
        bases = []
        for tag in tags:
            base = known.get((namespace, tag))
            if base is None:
                base = self._new_tag(namespace, tag)
            bases.append(base)
        return bases

    def _new_tag(self, namespace: str | None, tag: str) -> str:
        if len(self._tags) >= 10_000:
            self._tags.clear()
        head = self._tag if namespace is None else f"{self._prefix}:n:{namespace}:t:"
        base = self._tags[namespace, tag] = str(self._make_key(head + "{" + hash_tag(tag) + "}", None))
        return base

    def tag_pattern(self, tag: str, suffix: str = ":i") -> str:
        """A SCAN pattern matching one key of ``tag`` in every namespace (glob characters escaped):
        its index by default, ``suffix=":g"`` its generation."""
        literal = re.sub(r"([*?\[\]\\])", r"\\\1", hash_tag(tag))
        return str(self._make_key(f"{self._prefix}:n:*:t:{{{literal}}}", None)) + suffix

    def extra(self, name: str) -> str:
        """A key of the app's own bookkeeping (``:o:``), in no namespace and no tag's slot."""
        return str(self._make_key(f"{self._prefix}:o:{name}", None))

    def index(self, tag: str) -> str:
        return self.tag(tag) + ":i"

    def generation(self, tag: str) -> str:
        return self.tag(tag) + ":g"
