"""Drive worker processes of tests/nearworker.py from a test or a benchmark."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """One worker process; :meth:`call` sends a command and returns its reply."""

    def __init__(self, url: str, near: dict[str, Any] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.nearworker", url, json.dumps(near or {})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.pid = 0

    def wait_started(self) -> Worker:
        """Wait for the worker to be up (start several first, then wait: they boot in parallel)."""
        self.pid = int(json.loads(self._line(120))["started"])
        return self

    def _line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise TimeoutError(f"worker {self.process.pid} did not answer within {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.pid} exited ({self.process.poll()})")
        return line

    def send(self, op: str, **args: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.process.stdin.flush()

    def receive(self, timeout: float = 30) -> Any:
        reply = json.loads(self._line(timeout))
        if "error" in reply:
            raise AssertionError(f"worker {self.pid}: {reply['error']}")
        return reply["ok"]

    def call(self, op: str, timeout: float = 30, **args: Any) -> Any:
        self.send(op, **args)
        return self.receive(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
