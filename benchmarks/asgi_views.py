"""A cached async view under uvicorn with 200 concurrent clients, against Django's ``cache_page``.

    python -m benchmarks.asgi_views [--clients 200] [--seconds 3] [--repeat 5]

Two uvicorn processes (one worker each) serve benchmarks/asgi_site.py: the same async view cached
with ``cache_page_tagged`` and with Django's ``cache_page``, both through Django's built-in
RedisCache, each side on a Redis server of its own started for the run. The load comes from
another process: ``clients`` keep-alive HTTP/1.1 connections, each sending its next GET as soon
as the last response arrived, for ``seconds``; every response must be a 200. Runs alternate the
two sides; the ratio is the median of the runs' ratios of requests/s. The Redis connections
each server holds are counted with ``CLIENT LIST`` while it is under load. Bars: >= 3x the
requests/s, <= 4 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import redis

from benchmarks._setup import result

CONTROL = "tagcache-bench-control"
SIDES = ["ours", "theirs"]


async def _body(reader: asyncio.StreamReader, head: bytes) -> None:
    """Read a response's body: Content-Length bytes, or chunks."""
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
            return
    while True:  # Transfer-Encoding: chunked
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


async def _client(port: int, request: bytes, stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            await _body(reader, head.lower())
            counts[0 if status == b"200" else 1] += 1
    finally:
        writer.close()


async def _load(port: int, path: str, clients: int, seconds: float) -> list[int]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    counts = [0, 0]  # 200s, others
    stop = time.monotonic() + seconds
    await asyncio.gather(*(_client(port, request, stop, counts) for _ in range(clients)))
    return counts


def load(port: int, path: str, clients: int, seconds: float) -> float:
    """Requests/s served to ``clients`` connections for ``seconds``, the load in a process of its own."""
    args = [sys.executable, "-m", "benchmarks.asgi_views", "--load", str(port), path]
    args += ["--clients", str(clients), "--seconds", str(seconds)]
    run = subprocess.run(args, capture_output=True, text=True, check=True)
    ok, failed, elapsed = json.loads(run.stdout.splitlines()[-1])
    if failed:
        raise RuntimeError(f"{failed} responses of {path} were not 200")
    return float(ok / elapsed)


def connections(control: redis.Redis) -> int:
    """Clients connected to the benchmark's Redis, this process' own control connection aside."""
    return sum(1 for client in control.client_list() if client.get("name") != CONTROL)


def measure(port: int, path: str, clients: int, seconds: float, control: redis.Redis) -> tuple[float, int]:
    """Requests/s of ``path`` and the most Redis connections seen while it was under load."""
    seen: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(seconds / 5):
            seen.append(connections(control))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        rate = load(port, path, clients, seconds)
    finally:
        done.set()
        sampler.join()
    return rate, max([*seen, connections(control)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--load", nargs=2, metavar=("PORT", "PATH"))
    args = parser.parse_args()
    if args.load:
        started = time.monotonic()
        ok, failed = asyncio.run(_load(int(args.load[0]), args.load[1], args.clients, args.seconds))
        print(json.dumps([ok, failed, time.monotonic() - started]))
        return

    from tests.asgi import Server, start
    from tests.servers import RedisServer

    # One Redis server and one uvicorn process per side: CLIENT LIST then sees that side alone
    # (Django's caches are per request context under ASGI, and so may be their connections).
    redis_servers: dict[str, RedisServer] = {}
    asgi: dict[str, Server] = {}
    try:
        for side in SIDES:
            redis_servers[side] = RedisServer.start()
            asgi[side] = start("benchmarks.asgi_site:application", env={
                "DJANGO_SETTINGS_MODULE": "benchmarks.asgi_site", "REDIS_URL": redis_servers[side].url
            })  # fmt: skip
        run_benchmark(args, redis_servers, asgi)
    finally:
        for server in asgi.values():
            server.stop()
            server.logfile.unlink(missing_ok=True)
        for redis_server in redis_servers.values():
            redis_server.stop()


def run_benchmark(args: argparse.Namespace, redis_servers: dict[str, Any], asgi: dict[str, Any]) -> None:
    import httpx

    controls = {
        side: redis.Redis(host="127.0.0.1", port=server.port, client_name=CONTROL)
        for side, server in redis_servers.items()
    }
    bodies = {httpx.get(f"{asgi[side].url}/{side}/").text for side in [*SIDES, *SIDES]}
    assert len(bodies) == 1, "the two sides serve different pages"
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    peak = dict.fromkeys(SIDES, 0)
    ratios = []
    for run in range(args.repeat):
        for side in SIDES if run % 2 == 0 else SIDES[::-1]:
            rate, held = measure(asgi[side].port, f"/{side}/", args.clients, args.seconds, controls[side])
            rates[side].append(rate)
            peak[side] = max(peak[side], held)
        ratios.append(rates["ours"][-1] / rates["theirs"][-1])
    ours, theirs = statistics.median(rates["ours"]), statistics.median(rates["theirs"])
    ratio = statistics.median(ratios)
    print(
        f"cached async view hit under uvicorn, {args.clients} clients, {args.repeat} runs of {args.seconds}s"
    )
    print(
        f"  cache_page (Django's RedisCache) {theirs:8.0f} requests/s  {peak['theirs']:4} Redis connections"
    )
    print(f"  cache_page_tagged                {ours:8.0f} requests/s  {peak['ours']:4} Redis connections")
    print(f"  ratio {ratio:.2f} (median of the runs' ratios; bar: >= 3); connections: bar <= 4")
    result(f"async view hit, uvicorn, {args.clients} clients (req/s)", ours, theirs, ratio, ">= 3", unit="/s")
    result("  Redis connections of the ASGI process", peak["ours"], peak["theirs"], None, "<= 4", unit="")


if __name__ == "__main__":
    main()
