"""The near cache across real worker processes sharing one Redis (tests/nearworker.py).

Each worker reads through ``get_or_set``; a miss computes the key's *truth* (a plain Redis key
set here). After any change, a worker waits on a condition (the entry left its L1, or a barrier:
every push queued before it was applied), never a fixed sleep, and its next read must return the
truth. The last tests switch a protection off in the workers and show the stale read it prevents.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings as django_settings

from tests.servers import RedisServer
from tests.workers import Worker

NEAR = {"HEARTBEAT": 0.02, "MAX_LAG": 0.5}


def start(url: str, count: int = 3) -> list[Worker]:
    workers = [Worker(url, NEAR) for _ in range(count)]  # they boot in parallel
    for worker in workers:
        worker.wait_started()
        assert worker.call("ready")["serving"]
    return workers


def stop(workers: list[Worker]) -> None:
    for worker in workers:
        worker.close()


@pytest.fixture(scope="module")
def _shared_workers() -> Iterator[list[Worker]]:
    workers = start(str(django_settings.REDIS_URL))
    yield workers
    stop(workers)


@pytest.fixture
def shared(_shared_workers: list[Worker]) -> Iterator[tuple[redis.Redis, list[Worker]]]:
    """Three workers on the suite's own Redis (flushed before each test: a push that empties L1)."""
    with redis.Redis.from_url(str(django_settings.REDIS_URL)) as client:
        for worker in _shared_workers:
            worker.call("barrier")
        yield client, _shared_workers
    for worker in _shared_workers:
        worker.call("on")
        worker.call("limits", entries=10_000, bytes=1 << 26)


@pytest.fixture(scope="module")
def _own_server() -> Iterator[tuple[RedisServer, list[Worker]]]:
    # volatile-lru: entries (which have TTLs) are evicted, the truths (which have none) stay.
    server = RedisServer.start(extra_args=("--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru"))
    workers = start(server.url)
    yield server, workers
    stop(workers)
    server.stop()


@pytest.fixture
def own(_own_server: tuple[RedisServer, list[Worker]]) -> Iterator[tuple[RedisServer, list[Worker]]]:
    """A Redis of the module's own, small enough to evict, that a test may restart, and its workers."""
    server, workers = _own_server
    with server.client() as client:
        client.flushdb()
    for worker in workers:
        worker.call("barrier")
    yield server, workers
    for worker in workers:
        worker.call("on")


def restart(server: RedisServer) -> None:
    server.stop()
    restarted = RedisServer.start(binary=server.binary, port=server.port, extra_args=server.extra_args)
    server.process, server.workdir = restarted.process, restarted.workdir


def text(raw: object) -> str:
    assert isinstance(raw, bytes)
    return raw.decode()


def entry_key(key: str) -> str:
    return f"nw:1:tagcache:e:{key}"  # KEY_PREFIX "nw", version 1 (tests/nearworker.py)


def hold(workers: list[Worker], key: str, value: str, ttl: float = 600) -> None:
    """Each worker reads ``key`` until its L1 serves it.

    The second read may not be kept yet: the push of the first read's own write can arrive
    while it is in flight, which voids it (the conservative side of the ordering rule).
    """
    for worker in workers:
        replies = [worker.call("read", key=key, ttl=ttl) for _ in range(4)]
        assert all(reply["value"] == value for reply in replies), replies
        assert replies[-1]["l1"], replies


def wait_serving_again(worker: Worker, sessions: int) -> None:
    """Bounded wait for the worker's tracking channel to be back on a new connection, confirmed."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if worker.call("client_id")["sessions"] > sessions and worker.call("held", key="-")["serving"]:
            return
        worker.call("barrier")  # returns at once while the channel is down
        time.sleep(0.005)  # pacing only: the condition above decides
    raise AssertionError("the tracking channel did not come back")


def test_an_invalidation_in_one_process_reaches_the_others(shared: tuple[redis.Redis, list[Worker]]) -> None:
    client, workers = shared
    client.set("truth:k", "v1")
    hold(workers, "k", "v1")
    client.set("truth:k", "v2")
    assert workers[0].call("invalidate", tags=["warm:k"])["removed"] == 1
    # The invalidating process dropped its own copy before invalidate_tags() returned.
    assert workers[0].call("read", key="k") == {"value": "v2", "l1": False}
    # Another one: the entry leaves its L1 by itself (a bounded wait on that condition) ...
    assert workers[1].call("wait_gone", key="k")["gone"]
    assert workers[1].call("read", key="k") == {"value": "v2", "l1": False}
    # ... and a barrier there returns only after every push queued before it was applied.
    workers[2].call("barrier")
    assert workers[2].call("held", key="k")["held"] is False
    assert workers[2].call("read", key="k")["value"] == "v2"


def test_an_overwrite_or_a_delete_by_anyone_leaves_every_l1(shared: tuple[redis.Redis, list[Worker]]) -> None:
    client, workers = shared
    client.set("truth:a", "a1")
    client.set("truth:b", "b1")
    hold(workers, "a", "a1")
    hold(workers, "b", "b1")
    client.set("truth:a", "a2")
    client.set("truth:b", "b2")
    client.set(entry_key("a"), b"written by another program")  # unreadable: a miss for us
    client.delete(entry_key("b"))
    for worker in workers:
        worker.call("barrier")
        assert worker.call("read", key="a")["value"] == "a2"
        assert worker.call("read", key="b")["value"] == "b2"


def test_an_expiry_in_redis_leaves_every_l1(shared: tuple[redis.Redis, list[Worker]]) -> None:
    client, workers = shared
    client.set("truth:k", "v1")
    hold(workers, "k", "v1")
    # Shortened by another client: the PEXPIRE itself is a change of the key, pushed at once.
    client.pexpire(entry_key("k"), 100)
    for worker in workers:
        worker.call("barrier")
        assert worker.call("held", key="k")["held"] is False
    while client.exists(entry_key("k")):
        workers[0].call("barrier")
    # A natural expiry: L1's deadline is never later than Redis' own.
    client.set("truth:k", "v2")
    hold(workers, "k", "v2", ttl=0.3)
    while client.exists(entry_key("k")):
        workers[0].call("barrier")
    client.set("truth:k", "v3")
    for worker in workers:
        assert worker.call("read", key="k")["value"] == "v3"


def test_an_eviction_in_redis_leaves_every_l1(own: tuple[RedisServer, list[Worker]]) -> None:
    server, workers = own
    with server.client() as client:
        client.set("truth:k", "v1")
        hold(workers, "k", "v1")
        client.set("truth:k", "v2")
        filler = b"x" * 10_000
        i = 0
        while client.exists(entry_key("k")):  # fill Redis until LRU evicts the entry
            client.set(f"filler:{i}", filler, ex=600)
            i += 1
            assert i < 5000, "nothing was evicted"
    for worker in workers:
        assert worker.call("wait_gone", key="k")["gone"]
        assert worker.call("read", key="k")["value"] == "v2"


def killed_while_written(client: redis.Redis, worker: Worker) -> int:
    """Kill the worker's tracking connection and delete the entry in one transaction: no push for
    it. Returns the channel's count of sessions before."""
    channel = worker.call("client_id")
    pipe = client.pipeline(transaction=True)
    pipe.client_kill_filter(_id=channel["id"])
    pipe.delete(entry_key("k"))
    pipe.execute()
    return int(channel["sessions"])


def test_client_kill_of_the_tracking_connection_leaves_nothing_stale(
    shared: tuple[redis.Redis, list[Worker]],
) -> None:
    client, workers = shared
    client.set("truth:k", "v1")
    hold(workers, "k", "v1")
    client.set("truth:k", "v2")
    old_id = killed_while_written(client, workers[1])
    wait_serving_again(workers[1], old_id)
    assert workers[1].call("read", key="k")["value"] == "v2"
    assert workers[1].call("stats")["counters"]["near_flushes"] >= 1


def test_a_redis_restart_leaves_nothing_stale(own: tuple[RedisServer, list[Worker]]) -> None:
    server, workers = own
    with server.client() as client:
        client.set("truth:k", "v1")
        hold(workers, "k", "v1")
    sessions = [int(w.call("client_id")["sessions"]) for w in workers]
    restarts = [w.call("stats")["counters"]["near_restarts"] for w in workers]
    restart(server)
    with server.client() as client:
        client.set("truth:k", "v2")
    for worker, before, restarted in zip(workers, sessions, restarts, strict=True):
        wait_serving_again(worker, before)
        assert worker.call("read", key="k")["value"] == "v2"
        assert worker.call("stats")["counters"]["near_restarts"] == restarted + 1


def test_the_memory_bound_holds_under_a_write_heavy_load(shared: tuple[redis.Redis, list[Worker]]) -> None:
    client, workers = shared
    for worker in workers:
        worker.call("limits", entries=40, bytes=16_000)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(120)]
    for key in keys:
        client.set(f"truth:{key}", "x" * rng.randrange(10, 600))
    for _round in range(15):
        batch = rng.sample(keys, 60)
        for worker in workers:
            worker.send("reads", keys=batch)
        for worker in workers:
            worker.receive()
        # One in two keys written: a new truth and an invalidation from one of the workers.
        changed = rng.sample(keys, 60)
        for key in changed:
            client.set(f"truth:{key}", "y" * rng.randrange(10, 600) + str(_round))
        workers[_round % 3].call("invalidate", tags=[f"warm:{key}" for key in changed])
    for worker in workers:
        stats = worker.call("stats")
        assert stats["peak"][0] <= 40, seed
        assert stats["peak"][1] <= 16_000, seed
        assert stats["counters"]["near_evictions"] > 0, seed
        worker.call("barrier")
        for key in rng.sample(keys, 20):
            reply = worker.call("read", key=key)
            # From L1, after a barrier: the truth. (From Redis, the class "important" may
            # serve the copy a soft purge kept while another worker refreshes it.)
            if reply["l1"]:
                assert reply["value"] == text(client.get(f"truth:{key}")), seed


class TestTheProtectionsMatter:
    """With a protection switched off in the workers, the same scenarios read a stale value."""

    def test_without_the_flush_a_killed_channel_serves_stale(
        self, shared: tuple[redis.Redis, list[Worker]]
    ) -> None:
        client, workers = shared
        workers[1].call("off", name="near_flush")
        client.set("truth:k", "v1")
        hold(workers, "k", "v1")
        client.set("truth:k", "v2")
        old_id = killed_while_written(client, workers[1])
        wait_serving_again(workers[1], old_id)
        assert workers[1].call("read", key="k") == {"value": "v1", "l1": True}  # stale

    def test_without_the_flush_a_restart_serves_stale(self, own: tuple[RedisServer, list[Worker]]) -> None:
        server, workers = own
        worker = workers[0]
        worker.call("off", name="near_flush")
        with server.client() as client:
            client.set("truth:k", "v1")
            hold([worker], "k", "v1")
        before = int(worker.call("client_id")["sessions"])
        restart(server)
        with server.client() as client:
            client.set("truth:k", "v2")
        wait_serving_again(worker, before)
        assert worker.call("read", key="k") == {"value": "v1", "l1": True}  # stale
