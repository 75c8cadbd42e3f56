"""Real faults: Redis stopped, paused, or cut off mid-flight. Reads and writes fail open, the
circuit opens and closes again, and no invalidation is silently dropped."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from django_tagcache import TagCache, TagCacheUnavailable
from django_tagcache.caching.stores import get_async_store
from django_tagcache.core import metrics
from tests import faultkinds, faultload
from tests.faults import Faulty

RESET = 0.35  # a little more than the breaker's RESET_TIMEOUT in tests/faults.py


def open_circuit(faulty: Faulty) -> None:
    for _ in range(3):
        faulty.tc.get("any")
    assert faulty.tc.store.breaker is not None
    assert faulty.tc.store.breaker.state == "open"


@pytest.mark.parametrize("api", ["sync", "async"])
def test_stopped_redis_fails_open_and_opens_the_circuit(faulty: Faulty) -> None:
    tc = faulty.tc
    tc.set("k", 1, tags=["t"])
    faulty.stop()
    assert tc.get("k") is None
    assert tc.set("k2", 2, tags=["t"]) is False
    assert tc.get_or_set("k3", lambda: "computed", tags=["t"]) == "computed"
    assert tc.store.breaker is not None
    assert tc.store.breaker.state == "open"
    before = metrics.snapshot()
    for _ in range(20):
        assert tc.get("k") is None
    after = metrics.snapshot()
    assert after["retries"] == before["retries"]  # an open circuit sends nothing to the network
    assert after["circuit_open"] == 1  # logged and counted once, however many calls it refused
    with pytest.raises(TagCacheUnavailable):
        tc.invalidate_tags("t")  # never dropped silently


@pytest.mark.parametrize("api", ["sync", "async"])
def test_the_circuit_closes_when_redis_is_back(faulty: Faulty) -> None:
    tc = faulty.tc
    faulty.stop()
    open_circuit(faulty)
    faulty.restart()
    time.sleep(RESET)
    assert tc.set("k", 1, tags=["t"]) is True  # the half-open probe
    assert tc.store.breaker is not None
    assert tc.store.breaker.state == "closed"
    snapshot = metrics.snapshot()
    assert (snapshot["circuit_open"], snapshot["circuit_half_open"], snapshot["circuit_closed"]) == (1, 1, 1)
    assert tc.invalidate_tags("t") == 1


def test_a_failed_probe_opens_the_circuit_again(faulty: Faulty) -> None:
    faulty.stop()
    open_circuit(faulty)
    time.sleep(RESET)
    assert faulty.tc.get("k") is None  # the probe fails: Redis is still down
    assert faulty.tc.store.breaker is not None
    assert faulty.tc.store.breaker.state == "open"
    assert metrics.snapshot()["circuit_open"] == 2


@pytest.mark.parametrize("api", ["sync", "async"])
def test_paused_redis_fails_open_until_it_resumes(faulty: Faulty) -> None:
    tc = faulty.tc
    tc.set("k", "v", tags=["t"])
    faulty.admin().client_pause(1200)
    assert tc.get("k") is None  # the read timed out: served as a miss
    assert tc.get_or_set("k", lambda: "computed", tags=["t"]) == "computed"
    faulty.admin().ping()  # no timeout: answers once the pause is over
    time.sleep(RESET)
    assert eventually(lambda: tc.get("k") == "v")  # the breaker's probe may need one more reset


def eventually(condition: Any, within: float = 10.0) -> bool:
    """Whether ``condition()`` holds at some try before ``within`` seconds (a liveness bound for a
    loaded machine, not a speed check)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_server_busy_in_debug_sleep_fails_open(faulty: Faulty) -> None:
    tc = faulty.tc
    tc.set("k", "v", tags=["t"])
    command = faulty.admin().execute_command
    sleeper = threading.Thread(target=lambda: command("DEBUG", "SLEEP", "1"))  # type: ignore[no-untyped-call]
    sleeper.start()
    time.sleep(0.05)
    assert tc.get("k") is None
    sleeper.join()
    time.sleep(RESET)
    assert tc.get("k") == "v"


@pytest.mark.parametrize("api", ["sync", "async"])
def test_connections_cut_mid_flight_raise_then_recover(faulty: Faulty) -> None:
    tc = faulty.tc
    for i in range(10):
        tc.set(f"k{i}", i, tags=["t"])
    faulty.proxy.cut(refuse=True)
    with pytest.raises(TagCacheUnavailable):
        tc.invalidate_tags("t")
    assert faulty.admin().exists(tc.store.keys.entry("k0")) == 1  # nothing happened, and it said so
    faulty.proxy.heal()
    time.sleep(RESET)
    assert tc.invalidate_tags("t") == 10


class CutBefore:
    """A script runner that cuts the proxy's connections right before the ``nth`` call of ``name``."""

    def __init__(self, runner: Any, name: str, nth: int, faulty: Faulty) -> None:
        self.runner, self.name, self.left, self.faulty = runner, name, nth, faulty

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == self.name:
            self.left -= 1
            if self.left == 0:
                self.faulty.proxy.cut(refuse=True)
        return self.runner(name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)


def test_a_cut_during_a_big_drain_is_finished_by_the_retry(faulty: Faulty, settings: object) -> None:
    tc = faulty.tc
    store = tc.store
    pipe = faulty.admin().pipeline(transaction=False)
    for i in range(5000):
        pipe.set(store.keys.entry(f"e{i}"), b"x")
        pipe.zadd(store.keys.index("big"), {store.keys.entry(f"e{i}"): "+inf"})
    pipe.execute()

    # The connection is cut right before the second chunk is deleted: the generation has moved,
    # the first chunk is gone, the rest is listed in the tag's pending set.
    runner = store.scripts
    store.scripts = CutBefore(runner, "drain", 2, faulty)  # type: ignore[assignment]
    try:
        with pytest.raises(TagCacheUnavailable):
            tc.invalidate_tags("big")
    finally:
        store.scripts = runner
    assert 0 < faulty.admin().exists(*(store.keys.entry(f"e{i}") for i in range(5000))) < 5000
    faulty.proxy.heal()
    time.sleep(RESET)  # the circuit opened: its reset timeout, at least, before the probe
    tc.invalidate_tags("big")  # the caller retries: the pending set leads it to what is left
    admin = faulty.admin()
    assert not any(admin.exists(store.keys.entry(f"e{i}")) for i in range(0, 5000, 97))
    assert admin.dbsize() <= 2  # at most the generation and nothing else of the big tag


def test_fail_open_read_of_an_unreachable_port_is_a_connection_error() -> None:
    import redis

    from tests.servers import free_port

    with pytest.raises(RedisConnectionError):
        redis.Redis(port=free_port(), socket_connect_timeout=0.2).get("x")


# --- The fault table, quick: each fault under a mixed load (tests/faultload.py) ----------------------------

LONG = os.environ.get("TAGCACHE_FAULTS_LONG") == "1"  # every fault (Sentinel, Cluster), held longer
if LONG:
    pytestmark = pytest.mark.timeout(0)  # held faults add up past the per-test timeout
FAULTS = faultkinds.everything() if LONG else faultkinds.quick()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outbox", [False, True], ids=["outbox-off", "outbox-on"])
@pytest.mark.parametrize("fault_id", list(FAULTS))
def test_a_mixed_load_through_a_real_fault(fault_id: str, outbox: bool) -> None:
    seed = random.randrange(1_000_000)
    fault = FAULTS[fault_id]()
    try:
        row = faultload.run(fault, outbox=outbox, hold=3.0 if LONG else 0.5, seed=seed)
    finally:
        fault.close()
    summary = f"seed {seed}: {row.cells()} {row.errors}"
    assert row.requests > 0, summary
    assert row.answered == row.requests, summary  # every request answered, failing open
    if outbox:
        assert row.lost == 0, summary
        if "eviction" not in row.fault:  # eviction may remove an index: why W002 warns about it
            assert row.stale == 0, summary


async def mid_get(tc: Any, pool: Any, until_sent: int = 3) -> asyncio.Task[Any]:
    """An ``aget`` of "k" started and let run until it holds a connection and has sent its GET
    (a few turns of the loop: nothing comes back from a hung server)."""
    task: asyncio.Task[Any] = asyncio.ensure_future(tc.aget("k", "default"))
    while not pool._in_use_connections:
        await asyncio.sleep(0)
    for _ in range(until_sent):
        await asyncio.sleep(0)
    assert not task.done()
    return task


def test_an_aget_cancelled_mid_get_leaves_breaker_pool_and_connection_sound(faulty: Faulty) -> None:
    """The hit path awaits the guarded GET from aget itself: a cancellation while the server
    is hung (SIGSTOP) teaches the breaker nothing, gives the connection back, leaves no reply in
    flight for the next caller, and the read is still timed."""
    tc = TagCache()
    tc.set("k", "v", tags=["t"])
    tc.set("k2", "v2", tags=["t"])

    async def main() -> tuple[int, bool, Any, int]:
        assert await tc.aget("k") == "v"  # the loop's connection
        store = get_async_store()
        pool = store.client.connection_pool
        reads = metrics.timings()["read"][0]
        with faulty.hung():
            task = await mid_get(tc, pool)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            in_use = len(pool._in_use_connections)
        timed = metrics.timings()["read"][0] - reads
        assert store.breaker is not None
        return in_use, store.breaker.healthy, await tc.aget("k2"), timed

    in_use, healthy, after, timed = asyncio.run(main())
    assert in_use == 0
    assert healthy  # a cancelled read says nothing about Redis
    assert after == "v2"  # the cancelled GET's reply ("v") is not read as this one's
    assert timed == 1


def test_an_aget_whose_server_is_killed_mid_get_fails_open(faulty: Faulty) -> None:
    """The hit path's GET, sent to a hung server that is then killed: the caller gets its
    default (failing open, counted by the breaker), not an error; the server back, hits again."""
    tc = TagCache()
    tc.set("k", "v", tags=["t"])

    async def main() -> tuple[Any, bool]:
        assert await tc.aget("k") == "v"
        store = get_async_store()
        faulty.server.process.send_signal(signal.SIGSTOP)
        task = await mid_get(tc, store.client.connection_pool)
        faulty.server.process.kill()  # a stopped process dies of SIGKILL too
        faulty.server.process.wait()
        value = await task
        assert store.breaker is not None
        return value, store.breaker.healthy

    value, healthy = asyncio.run(main())
    assert value == "default"
    assert not healthy
    assert metrics.snapshot()["hits"] == 1
    faulty.restart()
    tc.set("k", "v2", tags=["t"])
    time.sleep(RESET)
    assert eventually(lambda: asyncio.run(tc.aget("k")) == "v2")
