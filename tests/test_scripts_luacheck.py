"""scripts/test never changes the machine unasked: luacheck is installed with apt-get only on request."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A PATH with a root `id` and an `apt-get` that only records its arguments; no luacheck."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt-get.log\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def _have_luacheck(fake_bin: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = f"source {SCRIPTS / '_luacheck.sh'}; have_luacheck"
    return subprocess.run(
        ["/bin/bash", "-c", script],
        env={"PATH": str(fake_bin), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_without_being_asked_it_says_what_to_run_and_runs_nothing(fake_bin: Path) -> None:
    done = _have_luacheck(fake_bin)
    assert done.returncode != 0
    assert not (fake_bin.parent / "apt-get.log").exists()
    assert "apt-get install lua-check" in done.stdout + done.stderr
    assert "INSTALL_LUACHECK=1" in done.stdout + done.stderr


def test_when_asked_it_says_it_runs_apt_get_as_root(fake_bin: Path) -> None:
    done = _have_luacheck(fake_bin, INSTALL_LUACHECK="1")
    assert "install -y -qq lua-check" in (fake_bin.parent / "apt-get.log").read_text()
    assert "as root" in done.stdout
