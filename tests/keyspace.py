"""Reading the store's own data in tests, on Redis or on the in-process store alike."""

from __future__ import annotations

import pytest

from django_tagcache.caching.api import get_store
from django_tagcache.core.memory import MemoryStore


def pttl(alias: str, key: str) -> int:
    """PTTL of a key of the store (-2 missing, -1 no expiry)."""
    store = get_store(alias)
    if isinstance(store, MemoryStore):
        return store.pttl(key)
    return int(store.client.pttl(key))


def index_size(alias: str, tag: str) -> int:
    """How many entries the index of ``tag`` lists."""
    store = get_store(alias)
    if isinstance(store, MemoryStore):
        return len(store.members(tag))
    return int(store.client.zcard(store.keys.index(tag)))


def skip_in_process(
    alias: str, reason: str = "counts Redis commands and round trips; the in-process store sends none"
) -> None:
    """Skip a test about Redis itself (commands sent, keys scanned) on the in-process store."""
    if alias == "locmem":
        pytest.skip(reason)


def delete_key(alias: str, key: str) -> None:
    """Delete one key of the store, as an eviction or an expiry would."""
    store = get_store(alias)
    if isinstance(store, MemoryStore):
        with store.state.lock:
            store.state.delete(key)
    else:
        store.client.delete(key)


class Keys:
    """The keys of one alias' store, read the same way on Redis and on the in-process store."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def pttl(self, key: str) -> int:
        return pttl(self.alias, key)

    def exists(self, key: str) -> int:
        return int(pttl(self.alias, key) != -2)

    def delete(self, key: str) -> None:
        delete_key(self.alias, key)

    def locks(self) -> list[str]:
        """Every recompute lock held."""
        store = get_store(self.alias)
        if isinstance(store, MemoryStore):
            with store.state.lock:
                names = [key for key in store.state.values if key.endswith(":lock")]
            return [name for name in names if store.pttl(name) != -2]
        return [key.decode() for key in store.client.scan_iter(match="*:lock", count=100)]
