"""scripts/demo.py: its errors and what it tells the user, without starting a server."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

DEMO = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


def _demo_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_script", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("env", "args"), [({"PORT": "abc"}, []), ({}, ["--port", "abc"]), ({}, ["--port", "0"])]
)
def test_a_bad_port_is_a_usage_error_not_a_traceback(env: dict[str, str], args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(DEMO), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "port must be a number from 1 to 65535" in done.stderr


def test_the_printed_command_runs_with_the_interpreter_that_has_the_package() -> None:
    line = _demo_module().commands_hint("redis://127.0.0.1:1")
    python = line.split("REDIS_URL=redis://127.0.0.1:1 ", 1)[1].split()[0]
    assert Path(python).resolve() == Path(sys.executable).resolve()
