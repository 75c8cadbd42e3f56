"""A worker process with a near cache, driven line by line over stdin/stdout (JSON).

    python -m tests.nearworker REDIS_URL [NEAR_CACHE as JSON]

Reads go through ``get_or_set`` under the tag ``warm:<key>`` (a class that may use L1); the
value computed on a miss is the key's *truth*, a plain Redis key the test sets. The test
compares what each read returned with the truth. Used by tests/test_near_cache_processes.py and
benchmarks/near_cache.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import Any

STALENESS = {"TAGS": {"warm:": "important"}, "DEFAULT": "critical"}


def truth_key(key: str) -> str:
    return f"truth:{key}"


def main() -> None:
    url = sys.argv[1]
    near_settings: dict[str, Any] = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["REDIS_URL"] = url
    import django
    from django.conf import settings

    django.setup()
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "nw",
            "OPTIONS": {"SOCKET_TIMEOUT": 1, "SOCKET_CONNECT_TIMEOUT": 1},
        }
    }
    settings.TAGCACHE = {
        "CACHE": "default",
        "CLOCK_SKEW_MARGIN": 0,
        "STALENESS": STALENESS,
        "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "BUDGET": 0.5},
        "CIRCUIT_BREAKER": {"FAILURES": 0},
        "NEAR_CACHE": {"ALIASES": ["default"], **near_settings},
    }
    import redis

    from django_tagcache import invalidate_tags, tagcache
    from django_tagcache.caching import near
    from django_tagcache.caching.api import get_store
    from django_tagcache.core import metrics, protections

    truth = redis.Redis.from_url(url)
    switches = contextlib.ExitStack()
    peak = [0, 0]

    def l1() -> near.Near:
        found = near.near_for("default", get_store())
        assert found is not None
        return found

    def read(key: str, timeout: float = 600) -> Any:
        def compute() -> Any:
            raw = truth.get(truth_key(key))
            return raw.decode() if isinstance(raw, bytes) else raw

        before = metrics.snapshot()["near_hits"]
        value = tagcache.get_or_set(key, compute, timeout=timeout, tags=[f"warm:{key}"])
        entries, size = l1().cache.size()
        peak[0], peak[1] = max(peak[0], entries), max(peak[1], size)
        return {"value": value, "l1": metrics.snapshot()["near_hits"] > before}

    def handle(command: dict[str, Any]) -> Any:
        op = command["op"]
        if op == "ready":
            found = l1()
            deadline = time.monotonic() + 10
            while not found.cache.serving() and time.monotonic() < deadline:
                found.channels[0].connected.wait(0.01)
                found.barrier()
            return {"serving": found.cache.serving(), "pid": os.getpid()}
        if op == "read":
            return read(command["key"], command.get("ttl", 600))
        if op == "reads":
            return [read(key) for key in command["keys"]]
        if op == "invalidate":
            return {"removed": invalidate_tags(*command["tags"])}
        if op == "invalidate_at":
            # When invalidate_tags() returned, on the system-wide monotonic clock (benchmarks).
            invalidate_tags(*command["tags"])
            return {"at": time.monotonic()}
        if op == "barrier":
            l1().barrier()
            return {}
        if op == "held":
            entry = get_store().keys.entry(command["key"])
            found = l1()
            return {"held": entry in found.cache._entries, "serving": found.cache.serving()}
        if op == "wait_gone":
            # A bounded wait on a condition: the entry leaves L1 (a push, or its L1 deadline).
            entry = get_store().keys.entry(command["key"])
            found = l1()
            started = time.perf_counter()
            deadline = time.monotonic() + command.get("timeout", 5)
            while time.monotonic() < deadline:
                with found.cache._lock:
                    if entry not in found.cache._entries:
                        return {"gone": True, "after": time.perf_counter() - started, "at": time.monotonic()}
                time.sleep(0.0001)
            return {"gone": False}
        if op == "stats":
            entries, size = l1().cache.size()
            return {"entries": entries, "bytes": size, "peak": peak, "counters": metrics.snapshot()}
        if op == "client_id":
            channel = l1().channels[0]
            return {"id": channel.client_id, "sessions": channel.sessions}
        if op == "limits":
            cache = l1().cache
            cache.max_entries, cache.max_bytes = command["entries"], command["bytes"]
            peak[0] = peak[1] = 0
            return {}
        if op == "on":
            switches.close()  # every protection switched off by "off" is on again
            return {}
        if op == "off":
            switches.enter_context(protections.switched_off(command["name"]))
            return {}
        if op == "time":
            return {"perf": time.perf_counter(), "wall": time.time()}
        raise ValueError(f"unknown op {op!r}")

    print(json.dumps({"started": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        try:
            reply = {"ok": handle(command)}
        except Exception as exc:  # reported to the test, which fails with it
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    near.reset()


if __name__ == "__main__":
    main()
