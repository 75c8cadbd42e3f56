"""A real ASGI server for the async tests and the benchmark: uvicorn, in a process of its own.

:func:`serve` starts ``uvicorn`` on a free loopback port, serving a Django project (by default
:mod:`tests.asgi_site`, the test settings with async views) against the suite's own Redis
servers (REDIS_URL is exported by tests/settings.py before the child starts), waits until it
answers, and stops it on exit. Everything the server writes goes to a log file, read back by
:meth:`Server.log` so a test can assert that no request failed inside the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import _die_with_parent, end_process, free_port, wait_answering

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    """One uvicorn process serving one Django project on 127.0.0.1."""

    port: int
    process: subprocess.Popen[bytes]
    logfile: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> bool:
        ping = f"{self.url}/ping/"
        return wait_answering(
            self.process, lambda: httpx.get(ping, timeout=2).status_code == 200, httpx.TransportError, timeout
        )

    def stop(self) -> None:
        """Ask uvicorn to shut down (SIGINT, as Ctrl-C does), then make sure it is gone."""
        end_process(self.process, signal.SIGINT)


def start(app: str = "tests.asgi_site:application", *, env: dict[str, str] | None = None) -> Server:
    """Start uvicorn serving ``app`` (module:attribute) and wait until ``/ping/`` answers."""
    handle, name = tempfile.mkstemp(prefix="tagcache-uvicorn-", suffix=".log")
    logfile = Path(name)
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "DJANGO_SETTINGS_MODULE": "tests.asgi_site",
        **(env or {}),
    }
    for _attempt in range(3):
        port = free_port()
        args = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        args += ["--workers", "1", "--log-level", "warning", "--no-access-log", "--lifespan", "off"]
        # A client's idle keep-alive connection must outlive a slow moment of a loaded machine.
        args += ["--timeout-keep-alive", "120"]
        process = subprocess.Popen(
            args, cwd=ROOT, env=child_env, stdout=handle, stderr=handle, preexec_fn=_die_with_parent
        )
        server = Server(port, process, logfile)
        if server.wait_ready(60):
            os.close(handle)
            return server
        server.stop()  # the port was taken meanwhile, or the app failed to import: try again
    os.close(handle)
    raise RuntimeError(f"uvicorn did not start ({app}):\n{logfile.read_text(errors='replace')[-3000:]}")


@contextmanager
def serve(app: str = "tests.asgi_site:application", **env: str) -> Iterator[Server]:
    """A running server for the block; ``env`` goes to the child (say ``TAGCACHE_TEST_ALIAS``)."""
    server = start(app, env=env)
    try:
        yield server
    finally:
        server.stop()
        server.logfile.unlink(missing_ok=True)
