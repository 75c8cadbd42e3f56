"""Which reads may use the near cache (L1) and the request cache (L0), and the L1 of each alias.

The L1 itself and its invalidation channel are Redis-side (:mod:`django_tagcache.core.nearcache`,
:mod:`django_tagcache.core.tracking`); this module decides, per read, whether they may serve it:

* the alias is listed in ``TAGCACHE['NEAR_CACHE']['ALIASES']``, and the call did not pass
  ``near=False`` (or passed ``near=True`` when ``DEFAULT`` is False);
* every tag of the entry allows at least ``MAX_LAG`` of staleness: ``critical`` data (budget 0)
  never uses L1. A read without tags (``tagcache.get``) counts as the ``DEFAULT`` class;
* no ``get_or_set``/``@cached`` compute or fragment/page render is open around the read: what
  it reads may end up inside another entry, so it is read from Redis (or from L0, which the
  request's read fence covers), never from L1, whose copy may lag by up to ``MAX_LAG``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from types import CoroutineType
from typing import TYPE_CHECKING, Any, cast

import redis
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache, default_key_func
from redis.cluster import RedisCluster
from redis.sentinel import SentinelConnectionPool

from ..conf import conf
from ..core import metrics
from ..core.bridge import settle
from ..core.nearcache import NearCache
from ..core.tracking import TrackingChannel
from . import bubbling, namespaces, requestcache, scopes, staleness

if TYPE_CHECKING:
    from ..core.store import TagStore

logger = logging.getLogger("django_tagcache")

_MARK = "\x00tagcache-prefix\x00"


class Near:
    """The L1 of one cache alias and the tracking channel(s) that keep it fresh."""

    def __init__(
        self,
        cache: NearCache,
        channels: list[TrackingChannel],
        prefixes: tuple[str, ...],
        *,
        default: bool = True,
        entry_head: str | None = None,
    ) -> None:
        self.cache = cache
        self.channels = channels
        self.prefixes = prefixes
        self.default = default
        #: What the final key of an entry outside any namespace, at the cache's default version,
        #: is ``key`` appended to; None when the cache's key function does not build it so.
        self.entry_head = entry_head
        # Read once: settings changes rebuild the near caches (reset()).
        self._floor_ms = int(cache.max_lag * 1000)
        classes = conf.STALENESS
        self.default_allowed = classes.classes[classes.default] * 1000 >= self._floor_ms

    def allows(self, tags: Sequence[str]) -> bool:
        """Every tag tolerates L1's staleness bound of ``max_lag`` (``critical`` ones never do)."""
        return all(staleness.budget_ms(tag) >= self._floor_ms for tag in tags)

    def covers(self, entry: str) -> bool:
        """Whether writes to ``entry`` are pushed to us (it starts with a tracked prefix)."""
        return entry.startswith(self.prefixes)

    def barrier(self) -> None:
        """Return once every push for writes finished before now is applied (or L1 was flushed)."""
        for channel in self.channels:
            channel.barrier()

    async def abarrier(self) -> None:
        """:meth:`barrier` for an event loop: awaits the replies of every channel at once, without
        holding the loop's thread (the tracking threads wake it)."""
        await asyncio.gather(*(channel.abarrier() for channel in self.channels))

    def close(self) -> None:
        for channel in self.channels:
            channel.stop()
        self.cache.flush()


# One L1 per alias and process (None: the alias has none), built at first use and closed by
# reset(); guarded by _lock.
_nears: dict[str, Near | None] = {}
#: The L1 of each alias asked so far, None for an alias without one: read, never written, by
#: the asyncio hot path (caching/api.py), which then skips wanted() for an alias that has none.
nears = _nears
_lock = threading.Lock()
# The near caches a plain get() may read without building its key through the cache's make_key
# (see hit()), by alias, and under None the one of TAGCACHE['CACHE']: filled by _build(), emptied
# with _nears. A retired L1 stays until then, but serves nothing (its channel 0 counts as down).
_fast: dict[str | None, tuple[Near, str]] = {}


def near_for(alias: str, store: TagStore) -> Near | None:
    """The L1 of ``alias``, started at first use; None if it has none."""
    try:
        return _nears[alias]
    except KeyError:
        pass
    with _lock:
        if alias not in _nears:
            _nears[alias] = _build(alias, store)
        return _nears[alias]


def _after_fork() -> None:
    """In a forked child the tracking threads are gone: forget the parent's near caches (and
    what they held), so that the child starts its own at first use. Their locks are not touched:
    a thread of the parent may have held one at the fork."""
    global _lock
    _nears.clear()
    _fast.clear()
    _lock = threading.Lock()


# A worker forked from a parent that already read through L1 (a preloading server) must not
# serve the parent's copies: the registration is process-global, like the map it clears.
os.register_at_fork(after_in_child=_after_fork)


def existing(alias: str) -> Near | None:
    """The L1 of ``alias`` if one was started in this process."""
    return _nears.get(alias)


def reset() -> None:
    """Stop every tracking channel and forget every L1 (settings changed)."""
    with _lock:
        nears = [near for near in _nears.values() if near is not None]
        _nears.clear()
        _fast.clear()
    for near in nears:
        near.close()


def _build(alias: str, store: TagStore) -> Near | None:
    settings = conf.NEAR_CACHE
    if alias not in settings.aliases:
        return None
    client = getattr(store, "client", None)
    topology: frozenset[str] | None = None
    if isinstance(client, RedisCluster):
        # One tracking connection per primary: each reports the changes of its own keys.
        topology = _topology(client)
        pools = [node.redis_connection.connection_pool for node in _primaries(client)]
    elif isinstance(client, redis.Redis):
        pools = [client.connection_pool]
    else:  # the in-process store needs no L1
        logger.warning("django-tagcache: no near cache for %r: it needs Redis.", alias)
        return None
    prefixes = _prefixes(store)
    if not prefixes:
        logger.warning("django-tagcache: no near cache for %r: its KEY_FUNCTION hides the key prefix.", alias)
        return None
    cache = NearCache(
        max_entries=settings.max_entries,
        max_bytes=settings.max_bytes,
        max_ttl=settings.max_ttl,
        max_lag=settings.max_lag,
        channels=len(pools),
    )
    channels = [
        TrackingChannel(
            cache,
            _connector(pool),
            prefixes=prefixes,
            channel=number,
            heartbeat=settings.heartbeat,
            reply_timeout=settings.reply_timeout,
            name=alias,
            master=_sentinel_master(pool),
        )
        for number, pool in enumerate(pools)
    ]
    found = Near(cache, channels, prefixes, default=settings.default, entry_head=_entry_head(alias, prefixes))
    if topology is not None and isinstance(client, RedisCluster):
        cluster, known = client, topology
        channels[0].on_beat = lambda: check_topology(alias, found, cluster, known)
        for channel in channels:
            channel.on_demoted = lambda: _demoted(alias, found, cluster)
    for channel in channels:
        channel.start()
    metrics.add_gauges(f"near:{alias}", lambda: _gauges(cache))
    if found.entry_head is not None and found.default_allowed:
        _fast[alias] = (found, found.entry_head)
        if alias == conf.CACHE:
            _fast[None] = _fast[alias]
    return found


def _entry_head(alias: str, prefixes: tuple[str, ...]) -> str | None:
    """``prefixes[0]`` if the final key of every plain entry is it followed by the caller's key:
    true of Django's own ``make_key`` with its default key function, which joins prefix, version
    and key with colons. Another key function (``KEY_FUNCTION``) or a backend that overrides
    ``make_key`` may transform the key itself: its keys are always built by calling it."""
    backend = caches[alias]
    if type(backend).make_key is not BaseCache.make_key or backend.key_func is not default_key_func:
        return None
    return prefixes[0]


def _retire(alias: str, found: Near) -> None:
    """Stop serving from ``found`` at once and forget it; the next read builds a new L1."""
    found.cache.flush(0)  # channel 0 counts as down: nothing is served, reads in flight are void
    with _lock:
        if _nears.get(alias) is found:
            del _nears[alias]
        for key in [key for key, (near, _head) in _fast.items() if near is found]:
            del _fast[key]


def _connector(pool: Any) -> Callable[[], redis.Connection]:
    """A new RESP3 connection like the pool's (same server, credentials, timeouts, Sentinel master)."""
    kwargs = {**pool.connection_kwargs, "protocol": 3}

    def connect() -> redis.Connection:
        return pool.connection_class(**kwargs)  # type: ignore[no-any-return]

    return connect


def _sentinel_master(pool: Any) -> Callable[[], tuple[str, int]] | None:
    """Behind Sentinel: where the master is now, as the first Sentinel that answers says it.

    Asked with ``SENTINEL GET-MASTER-ADDR-BY-NAME``, which names the promoted replica as soon as
    the failover has promoted it, where ``SENTINEL MASTERS`` (what redis-py connects by) still
    names the old master until the failover ends: another client may write on the new master in
    between. The channel then reconnects through the pool (to whichever master the pool is told
    of), and the pool drops its idle connections to a master it is no longer told of. None for a
    pool that is not a Sentinel master's.
    """
    if not isinstance(pool, SentinelConnectionPool) or not pool.is_master:
        return None
    sentinels: list[Any] = pool.sentinel_manager.sentinels
    name: str = pool.service_name

    def master() -> tuple[str, int]:
        errors = []
        for sentinel in list(sentinels):
            try:
                found = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                errors.append(repr(exc))
                continue
            if found:
                host, port = found
                return (host.decode() if isinstance(host, bytes) else str(host)), int(port)
        raise redis.ConnectionError(f"no Sentinel names a master for {name!r} ({', '.join(errors)})")

    return master


def _primaries(client: RedisCluster) -> list[Any]:
    """The primaries the cluster client knows now (redis-py leaves this call untyped)."""
    nodes: list[Any] = cast("Any", client).get_primaries()
    return nodes


def _topology(client: RedisCluster) -> frozenset[str]:
    return frozenset(node.name for node in _primaries(client))


def check_topology(alias: str, found: Near, client: RedisCluster, known: frozenset[str]) -> bool:
    """Redis Cluster, at each heartbeat: if the primaries changed, a node may hold keys no channel
    tracks. Stop serving at once and retire this L1; the next read builds one for the new
    topology. True if it was retired."""
    if _topology(client) == known:
        return False
    logger.warning("django-tagcache: the primaries of %r changed: near cache flushed", alias)
    _retire(alias, found)
    threading.Thread(target=found.close, daemon=True).start()  # not from the channel's own thread
    return True


def _demoted(alias: str, found: Near, client: RedisCluster) -> None:
    """Redis Cluster: a channel's node answered that it is a replica now (a failover). Retire this
    L1 as for a topology change, and refresh the cluster client's map of slots, which L1 hits
    alone would never correct; the next read builds an L1 on the new primaries."""
    logger.warning("django-tagcache: a primary of %r was demoted: near cache flushed", alias)
    _retire(alias, found)

    def retire() -> None:
        found.close()
        try:
            cast("Any", client).nodes_manager.initialize()
        except (redis.RedisError, OSError) as exc:  # the next read that meets MOVED refreshes it
            logger.warning("django-tagcache: could not refresh the slots of %r: %s", alias, exc)

    threading.Thread(target=retire, daemon=True).start()  # not from the channel's own thread


def _gauges(cache: NearCache) -> dict[str, int]:
    entries, size = cache.size()
    return {"near_entries": entries, "near_bytes": size}


def _prefixes(store: TagStore) -> tuple[str, ...]:
    """The key prefixes of entries, plain and namespaced, as the cache backend writes them."""
    found = []
    for head in (f"{store.options.key_prefix}:e:", f"{store.options.key_prefix}:n:"):
        made = store.keys._make_key(head + _MARK, None)
        if not made.endswith(_MARK):
            return ()
        found.append(made[: -len(_MARK)])
    return tuple(found)


def hit(alias: str | None, key: str, version: int | None, call: bool | None) -> bytes | None:
    """The payload L1 holds for a plain read of ``key`` (``tagcache.get``), or None.

    The few-microsecond path of an L1 hit: the same rules as :func:`wanted` and :func:`fetch`
    decide, but the final key is ``entry_head + key``, not a call of the cache's ``make_key``.
    Only where that is the same key: no namespace, the cache's default version, Django's default
    key function (see :func:`_entry_head`). None says nothing about the entry: the caller then
    takes the full read path, which decides again (and builds the L1 at first use).
    """
    if call is False or version is not None:
        return None
    found = _fast.get(alias)
    if found is None:
        return None
    near, head = found
    if call is None and not near.default:
        return None
    if namespaces.current() is not None or scopes.computing_now() or bubbling.collecting():
        return None
    return near.cache.get(head + key)


def wanted(
    alias: str, store: TagStore, call: bool | None, tags: Callable[[], Sequence[str]] | None
) -> Near | None:
    """The L1 a read may use, or None (see the module docstring). ``tags`` gives the read's tags
    (called only when an L1 exists); None: a read without tags, of the default class."""
    if call is False:
        return None
    near = _nears[alias] if alias in _nears else near_for(alias, store)
    if near is None or (call is None and not near.default):
        return None
    if scopes.computing_now() or bubbling.collecting():
        return None
    if tags is None:
        return near if near.default_allowed else None
    return near if near.allows(tags()) else None


async def fetch(
    store: TagStore,
    entry: str,
    near: Near | None,
    keep: Callable[[bytes], bool] | None = None,
    io: Any = None,
) -> bytes | None:
    """The payload of ``entry``: from L0, else L1 (``near``), else Redis, filling L1 and L0.

    ``store`` is the alias' blocking store (L0 is keyed by it); ``io`` the store the Redis read
    goes through, if another (the asyncio store of an ``a*`` call): the same rules either way,
    and a blocking read never suspends (run it with ``run_sync`` or await it on the blocking flow).
    ``keep`` may refuse a payload for L1 (a rendered entry whose own tags do not allow it).
    Redis errors propagate.
    """
    held = requestcache.entries.get()  # requestcache.get(), inlined: every read's path
    if held is not None:
        payload = held.get((store, entry))
        if payload is not None:
            metrics.incr("request_hits")
            return payload
    reader: Any = store if io is None else io
    if near is None or not near.covers(entry):
        payload = reader.get(entry)
        if type(payload) is CoroutineType:  # settle(), inlined for the asyncio store: every read's path
            payload = await payload
        elif payload is not None and type(payload) is not bytes:
            payload = await settle(payload)
    else:
        payload = near.cache.get(entry)
        if payload is not None:
            metrics.incr("near_hits")
            requestcache.put(store, entry, payload)
            return payload
        metrics.incr("near_misses")
        ticket = near.cache.begin(entry)  # before the read is sent: see core/nearcache.py
        try:
            payload, ttl_ms = await settle(reader.get_with_ttl(entry))
        except BaseException:  # a cancelled await too: the ticket must not stay registered
            near.cache.abandon(ticket)
            raise
        # PTTL: -1 no expiry (max_ttl applies), -2 gone meanwhile (not kept).
        ttl = None if ttl_ms == -1 else ttl_ms / 1000
        if payload is not None and (keep is None or keep(payload)):
            near.cache.put(ticket, payload, ttl)
        else:
            near.cache.abandon(ticket)
    if payload is not None and held is not None:
        held[store, entry] = payload  # requestcache.put(): this request reads it no more
    return payload


def wrote(alias: str, store: TagStore, entry: str, payload: bytes | None = None) -> None:
    """This process wrote or deleted ``entry``: its own later reads must not see the old copy."""
    near = existing(alias)
    if near is not None:
        near.cache.discard(entry)
    if payload is None:
        requestcache.forget(store, entry)
    else:
        requestcache.put(store, entry, payload)


async def invalidated(alias: str, asynchronous: bool = False) -> None:
    """This process invalidated tags on ``alias``: drop what it holds before the call returns.

    ``asynchronous``: the caller is an event loop, which awaits the confirmation rather than
    block on it (the blocking flow's coroutine never suspends).
    """
    requestcache.clear()
    near = existing(alias)
    if near is not None:
        if asynchronous:
            await near.abarrier()
        else:
            near.barrier()


def describe(alias: str) -> dict[str, Any]:
    """What the L1 of ``alias`` holds and whether it serves (for tests and inspection)."""
    near = existing(alias)
    if near is None:
        return {"enabled": False}
    entries, size = near.cache.size()
    return {"enabled": True, "serving": near.cache.serving(), "entries": entries, "bytes": size}
