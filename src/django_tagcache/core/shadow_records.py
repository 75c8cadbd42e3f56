"""What the stale-read auditor keeps in Redis, for every process and the commands to read.

- Outcomes of audited reads, counted per hour: one hash per hour (``...:o:audit:<YYYYMMDDHH>``)
  whose fields are ``<staleness class>|<outcome>``, kept :data:`KEEP_HOURS` hours. The SLO
  report (``tagcache_stats --slo``) sums the hours of its window.
- Argument sets of ``@cached`` functions, for ``tagcache_verify``: per function one hash
  (``...:o:calls:<function>``), entry key -> pickled call, of at most ``size`` fields (past that,
  random ones are dropped); the set ``...:o:functions`` names the functions that have one.

Only the auditor's background thread and the commands call these: never a request. On the
in-process store (no Redis) they are kept in this process. No Django in here.
"""

from __future__ import annotations

import pickle
import random
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from .memory import MemoryStore

if TYPE_CHECKING:
    from .store import TagStore

#: Hours of outcomes kept in Redis: a week and a day, enough for a weekly SLO report.
KEEP_HOURS: Final = 8 * 24
#: Seconds an argument set lives without being refreshed by a new call.
CALLS_TTL: Final = 7 * 86400

_lock = threading.Lock()
# The in-process store's records: hour -> Counter, function -> {slot: payload}.
_local_outcomes: dict[str, Counter[str]] = {}
_local_calls: dict[str, dict[str, bytes]] = {}


def _hour(at: float) -> str:
    return time.strftime("%Y%m%d%H", time.gmtime(at))


def _client(store: TagStore) -> Any:
    """The store's Redis client; None for the in-process store, which has none."""
    return None if isinstance(store, MemoryStore) else store.client


def add_outcome(store: TagStore, staleness_class: str, outcome: str, at: float | None = None) -> None:
    """Count one audited read of ``staleness_class`` with ``outcome`` in the hour of ``at`` (now)."""
    hour, field = _hour(time.time() if at is None else at), f"{staleness_class}|{outcome}"
    client = _client(store)
    if client is None:
        with _lock:
            _local_outcomes.setdefault(hour, Counter())[field] += 1
        return
    key = store.keys.extra(f"audit:{hour}")

    def write() -> None:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(key, field, 1)
        pipe.expire(key, KEEP_HOURS * 3600)
        pipe.execute()

    store._call(write)


def outcomes(store: TagStore, hours: int, now: float | None = None) -> Counter[tuple[str, str]]:
    """(class, outcome) -> audited reads, summed over the last ``hours`` hours (this one included)."""
    at = time.time() if now is None else now
    names = [_hour(at - 3600 * n) for n in range(hours)]
    total: Counter[tuple[str, str]] = Counter()
    client = _client(store)
    if client is None:
        with _lock:
            found = [dict(_local_outcomes.get(name, {})) for name in names]
    else:
        keys = [store.keys.extra(f"audit:{name}") for name in names]

        def read() -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            return list(pipe.execute())

        found = [{_text(k): int(v) for k, v in reply.items()} for reply in store._call(read)]
    for fields in found:
        for field, value in fields.items():
            staleness_class, _, outcome = field.rpartition("|")
            total[staleness_class, outcome] += value
    return total


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def remember_call(store: TagStore, function: str, entry: str, call: tuple[Any, ...], size: int) -> None:
    """Keep one argument set of ``function`` (a picklable tuple) under its entry's key.

    At most ``size`` are kept: past that, random others are dropped (a sample of what is cached).
    """
    if size <= 0:
        return
    payload = pickle.dumps(call, pickle.HIGHEST_PROTOCOL)
    client = _client(store)
    if client is None:
        with _lock:
            kept = _local_calls.setdefault(function, {})
            kept[entry] = payload
            while len(kept) > size:
                del kept[random.choice([name for name in kept if name != entry])]
        return
    key, names = store.keys.extra(f"calls:{function}"), store.keys.extra("functions")

    def write() -> None:
        pipe = client.pipeline(transaction=False)  # one round trip (one per node on a cluster)
        pipe.hset(key, entry, payload)
        pipe.expire(key, CALLS_TTL)
        pipe.sadd(names, function)
        pipe.hlen(key)
        over = int(pipe.execute()[-1]) - size
        if over > 0:
            extra = [name for name in client.hrandfield(key, over + 1) if _text(name) != entry][:over]
            if extra:
                client.hdel(key, *extra)

    store._call(write)


def functions(store: TagStore) -> list[str]:
    """The functions with argument sets kept, sorted."""
    client = _client(store)
    if client is None:
        with _lock:
            return sorted(_local_calls)
    names = store.keys.extra("functions")
    return sorted(_text(name) for name in store._call(lambda: client.smembers(names)))


def calls(store: TagStore, function: str) -> list[tuple[Any, ...]]:
    """The argument sets kept for ``function``; one that no longer unpickles is left out."""
    client = _client(store)
    if client is None:
        with _lock:
            payloads = list(_local_calls.get(function, {}).values())
    else:
        key = store.keys.extra(f"calls:{function}")
        payloads = list(store._call(lambda: client.hgetall(key)).values())
    found = []
    for payload in payloads:
        try:
            found.append(pickle.loads(payload))
        # A class renamed by a deploy, say: that call can no longer be made; skip it.
        except Exception:  # unpickling raises almost anything
            continue
    return found


def reset_local() -> None:
    """Forget the in-process records (tests)."""
    with _lock:
        _local_outcomes.clear()
        _local_calls.clear()
