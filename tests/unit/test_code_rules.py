"""The rules of the code base, checked by the test suite so that breaking them fails CI:
module boundaries (import-linter), lint (ruff) and strict typing of the kernel (mypy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_module_boundaries_hold() -> None:
    """Modules import only the kernel and other modules' contracts; the kernel imports no
    module, adapter, transport library or web framework."""
    result = run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_kernel_is_strictly_typed() -> None:
    result = run(str(BIN / "mypy"), "kernel")
    assert result.returncode == 0, result.stdout + result.stderr
