#!/usr/bin/env python3
"""Run Cleave from a fresh clone with nothing but Python 3.11+ and pip.

    python3 dev.py run     serve the whole shop on http://127.0.0.1:8000
    python3 dev.py test    run the test suite
    python3 dev.py cleave ARGS...   any other `cleave` command (demo, dead-letters, ...)

The first call creates `.venv` in the repository and installs the project into it; later
calls reuse it and reinstall only when pyproject.toml changed. Extra arguments go through.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".cleave-installed"


def ensure_environment() -> Path:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py must explain this on old Pythons
        sys.exit(f"Cleave needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    python = BIN / ("python.exe" if os.name == "nt" else "python")
    if not python.exists():
        print("creating .venv ...", file=sys.stderr, flush=True)
        venv.create(VENV, with_pip=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        print("installing cleave and its dependencies into .venv ...", file=sys.stderr, flush=True)
        subprocess.check_call(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--editable",
                ".[dev]",
            ],
            cwd=ROOT,
        )
        STAMP.write_text(wanted)
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "cleave"):
        print(__doc__, file=sys.stderr)
        return 2
    python = ensure_environment()
    command, rest = argv[0], argv[1:]
    if command == "test":
        line = [str(python), "-m", "pytest", *rest]
    elif command == "run":
        line = [str(BIN / "cleave"), "run", *rest]
    else:
        line = [str(BIN / "cleave"), *rest]
    os.chdir(ROOT)
    if os.name == "nt":
        return subprocess.call(line)
    os.execv(line[0], line)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
