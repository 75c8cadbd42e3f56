"""The Python x Django test matrix, run on demand with ./scripts/matrix (nox).

Each session installs the built package (not an editable checkout, so a file missing from the wheel
fails here), the pinned test requirements and one Django series, then runs pytest. Arguments after
``--`` go to pytest: ``./scripts/matrix -p 3.12 -- -k invalidate``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DJANGOS = ["5.2", "6.0", "6.1"]
# Django 6.0 and later need Python 3.12 or newer.
MIN_PYTHON = {"5.2": "3.10", "6.0": "3.12", "6.1": "3.12"}

nox.options.reuse_venv = "yes"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def supported(python: str, django: str) -> bool:
    return version_key(python) >= version_key(MIN_PYTHON[django])


def runs(command: str) -> bool:
    path = shutil.which(command)
    if path is None:
        return False
    # A pyenv shim is on PATH for every installed version but fails unless that version is selected.
    return subprocess.run([path, "-c", ""], capture_output=True, check=False).returncode == 0


def find_pyenv_interpreters() -> None:
    """Put pyenv's interpreters on PATH for the versions that are not runnable as pythonX.Y already.

    nox looks interpreters up by name on PATH; pyenv installs them under $PYENV_ROOT/versions/X.Y.Z/bin,
    which is not on PATH unless selected with ``pyenv shell``. The newest patch release wins.
    """
    versions_dir = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    extra = []
    for python in PYTHONS:
        if runs(f"python{python}"):
            continue
        candidates = [
            found.parent
            for found in versions_dir.glob(f"{python}.*/bin/python{python}")
            if found.parent.parent.name.replace(".", "").isdigit()
        ]
        if candidates:
            extra.append(str(max(candidates, key=lambda bindir: version_key(bindir.parent.name))))
    if extra:
        os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])


find_pyenv_interpreters()


@nox.session
@nox.parametrize(
    "python,django",
    [(python, django) for python in PYTHONS for django in DJANGOS if supported(python, django)],
)
def tests(session: nox.Session, django: str) -> None:
    session.install(".", "-r", "requirements/test.txt", f"django~={django}.0")
    session.run("python", "-m", "django", "--version")
    session.run("python", "-m", "pytest", *session.posargs)
