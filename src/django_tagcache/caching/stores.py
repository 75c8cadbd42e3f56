"""One :class:`~django_tagcache.core.store.TagStore` per cache alias and process, built from settings."""

from __future__ import annotations

import threading
from typing import Any, cast

from django.core.cache import caches

from ..backends import backend_kind, is_cluster, raw_client
from ..conf import conf
from ..core import aio_clients, memory
from ..core.aio_store import AsyncClusterTagStore, AsyncScriptRunner, AsyncTagStore
from ..core.breaker import CircuitBreaker
from ..core.cluster_store import ClusterTagStore
from ..core.events import EventOptions
from ..core.scripts import ScriptRunner
from ..core.store import KeyScheme, MakeKey, StoreOptions, TagStore
from . import namespaces, staleness

# A store holds its alias' client, loaded-script state and circuit breaker. Rebuilt when CACHES
# or TAGCACHE change (see apps.py); reset_stores() empties the map.
_stores: dict[str, TagStore] = {}
_stores_lock = threading.Lock()


def get_store(alias: str | None = None) -> TagStore:
    """The :class:`~django_tagcache.core.store.TagStore` of a cache alias (default: ``TAGCACHE['CACHE']``)."""
    alias = alias or conf.CACHE
    store = _stores.get(alias)
    if store is None:
        with _stores_lock:
            store = _stores.get(alias)
            if store is None:
                store = _stores[alias] = _build_store(alias)
    return store


def _build_store(alias: str) -> TagStore:
    options = StoreOptions(
        key_prefix=conf.KEY_PREFIX,
        chunk_size=conf.CHUNK_SIZE,
        generation_ttl_ms=conf.GENERATION_TTL * 1000,
        prune_per_write=conf.PRUNE_PER_WRITE,
        tombstone_ttl_ms=conf.TOMBSTONE_TTL * 1000,
        clock_skew_margin_ms=int(conf.CLOCK_SKEW_MARGIN * 1000),
        drain_guard_ttl_ms=conf.DRAIN_GUARD_TTL * 1000,
        invalidation_replicas=conf.INVALIDATION_REPLICAS,
        replica_timeout_ms=max(1, int(conf.INVALIDATION_REPLICA_TIMEOUT * 1000)),
        retry=conf.RETRY,
    )
    make_key = caches[alias].make_key
    if backend_kind(caches[alias]) == "locmem":
        return _memory_store(alias, make_key, options)
    client = raw_client(alias)
    mode = cast("Any", conf.SCRIPT_MODE)
    store: TagStore
    if is_cluster(client):
        # Scripts there may touch one slot each: the same promises, kept in several steps.
        store = ClusterTagStore(client, make_key=make_key, options=options, mode=mode)
    else:
        store = TagStore(client, make_key=make_key, options=options, scripts=ScriptRunner(client, mode))
    breaker = conf.CIRCUIT_BREAKER
    store.breaker = CircuitBreaker(alias, failures=breaker.failures, reset_timeout=breaker.reset_timeout)
    store.keys = KeyScheme(make_key, options.key_prefix, namespace=namespaces.current)
    if store.standalone:
        store.staleness = staleness.budget_ms  # soft purges rename entries: one server only
    events = conf.EVENTS
    if events is not None and events.publish:
        store.events = EventOptions(events.stream, events.maxlen, events.service, events.region)
    return store


def _memory_store(alias: str, make_key: MakeKey, options: StoreOptions) -> TagStore:
    """LocMemCache: the in-process store, with this alias' data (kept when the store is rebuilt)."""
    store = memory.MemoryStore(
        memory.state_for(alias), make_key=make_key, options=options, namespace=namespaces.current
    )
    store.staleness = staleness.budget_ms
    return store


def get_async_store(alias: str | None = None) -> AsyncTagStore:
    """The :class:`~django_tagcache.core.aio_store.AsyncTagStore` of a cache alias, for the running loop.

    It reaches the servers of the alias' own store through ``redis.asyncio`` (each event loop has
    its own connections, closed when the loop shuts down) and shares that store's keys, options,
    staleness budgets and circuit breaker. Call it from a coroutine.
    """
    stores = _async_stores.get()
    store = stores.get(alias)  # None, the default alias, is kept too: no settings read on a hit
    if store is None:
        name = alias or conf.CACHE
        store = stores.get(name)
        if store is None:
            store = stores[name] = _build_async_store(name)
        stores[alias] = store
    return store


def _build_async_store(alias: str) -> AsyncTagStore:
    sync = get_store(alias)
    store: AsyncTagStore
    if isinstance(sync, memory.MemoryStore):
        store = memory.AsyncMemoryStore(sync.state, make_key=caches[alias].make_key, options=sync.options)
    else:
        client = aio_clients.asyncio_twin(
            sync.client, max_connections=conf.ASYNC_MAX_CONNECTIONS, wait_timeout=conf.RETRY.budget
        )
        mode = cast("Any", conf.SCRIPT_MODE)
        if is_cluster(sync.client):
            store = AsyncClusterTagStore(
                client, make_key=caches[alias].make_key, options=sync.options, mode=mode
            )
        else:
            store = AsyncTagStore(
                client,
                make_key=caches[alias].make_key,
                options=sync.options,
                scripts=AsyncScriptRunner(client, mode),
            )
        store.breaker = sync.breaker  # one view of the server's health for both transports
    store.keys = sync.keys
    store.staleness = sync.staleness
    store.events = sync.events
    store.alias, store.blocking = alias, sync
    return store


async def _close_stores(stores: dict[str | None, AsyncTagStore]) -> None:
    for store in {id(store): store for store in stores.values()}.values():  # the default one is there twice
        if not isinstance(store, memory.AsyncMemoryStore):
            await aio_clients.close(store.client)


# Per event loop: alias -> its asyncio store (connections belong to the loop that opened them);
# None -> the store of TAGCACHE['CACHE'] (emptied, like every store, when the settings change).
_async_stores: aio_clients.PerLoop[dict[str | None, AsyncTagStore]] = aio_clients.PerLoop(dict, _close_stores)


def reset_stores() -> None:
    """Forget every store; the next call builds them again from the current settings."""
    with _stores_lock:
        _stores.clear()
    _async_stores.clear()
    namespaces.reset()
