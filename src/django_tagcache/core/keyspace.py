"""Where this app's keys are in Redis, and how to walk them: shared by the operations commands.

The layout is derived from the store's own key scheme (backend prefix, version, ``KEY_PREFIX``),
so it follows every setting that shapes keys. Walking is ``SCAN`` in bounded steps on every
primary: never ``KEYS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

    from .store import TagStore

_PROBE = "tagcache-probe-0c5e"
_GLOB = re.compile(r"([*?\[\]\\])")
SCAN_COUNT = 1000


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return _GLOB.sub(r"\\\1", text)


@dataclass(frozen=True)
class KeyLayout:
    """Where this app's keys are, from the store's key scheme (backend prefix, version, KEY_PREFIX)."""

    entry_head: str
    entry_tail: str
    tag_head: str  # the keys of tag T start with tag_head + "{" + T + "}" + tag_tail
    tag_tail: str

    @classmethod
    def of(cls, store: TagStore) -> KeyLayout:
        """Raises ValueError when the cache's KEY_FUNCTION does not keep key names readable."""
        entry, tag = store.keys.entry(_PROBE), store.keys.tag(_PROBE)
        if entry.count(_PROBE) != 1 or tag.count("{" + _PROBE + "}") != 1:
            raise ValueError(
                "the cache's KEY_FUNCTION does not keep key names readable, so they cannot be scanned"
            )
        entry_head, entry_tail = entry.split(_PROBE)
        tag_head, tag_tail = tag.split("{" + _PROBE + "}")
        return cls(entry_head, entry_tail, tag_head, tag_tail)

    def pattern(self) -> str:
        """A MATCH pattern for every key of this app (entries and tag keys)."""
        size = 0
        while size < min(len(self.entry_head), len(self.tag_head)) and (
            self.entry_head[size] == self.tag_head[size]
        ):
            size += 1
        common = self.entry_head[:size]
        return glob_escape(common) + "*"

    def tag_pattern(self, suffixes: str = "ip") -> str:
        """A MATCH pattern for tag keys ending in ``:i`` (index) or ``:p`` (pending drains)."""
        return f"{glob_escape(self.tag_head)}{{*}}{glob_escape(self.tag_tail)}:[{suffixes}]"

    def classify(self, key: bytes | str) -> tuple[str, str] | None:
        """("entry", key) or (kind, tag) for kind in index/generation/pending; None if not ours."""
        text = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else key
        if text.startswith(self.tag_head + "{"):
            for suffix, kind in ((":i", "index"), (":g", "generation"), (":p", "pending"), (":d", "pending")):
                end = "}" + self.tag_tail + suffix
                if text.endswith(end) and len(text) > len(self.tag_head) + len(end):
                    return kind, text[len(self.tag_head) + 1 : -len(end)]
            return None
        if text.startswith(self.entry_head) and text.endswith(self.entry_tail):
            return "entry", text[len(self.entry_head) : len(text) - len(self.entry_tail)]
        return None


def server_now_ms(client: redis.Redis) -> int:
    """The server's clock in ms: index scores are expiry times written by the server's clock."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def scan_keys(client: redis.Redis, pattern: str | None, count: int = SCAN_COUNT) -> Iterator[bytes]:
    """Every key matching ``pattern`` (every key if None), ``count`` keys per SCAN step, on every primary."""
    yield from client.scan_iter(match=pattern, count=count)
