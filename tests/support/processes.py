"""Real processes for the integration tests: the app (`cleave run`) and the sandbox provider."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from entrypoints.up import free_port

ROOT = Path(__file__).resolve().parents[2]


class Process:
    """A child process whose output goes to a log file (read it when a test fails)."""

    def __init__(self, arguments: list[str], environment: Mapping[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", *arguments],
            cwd=ROOT,
            env={**os.environ, **environment},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def close(self) -> None:
        self.kill()
        self._log_file.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


def wait_until_ready(url: str, process: Process, within: float = 60) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if process.popen.poll() is not None:
            raise RuntimeError(f"the process exited early:\n{process.output()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} was not ready in {within} s:\n{process.output()}")


def start_sandbox(directory: Path, slow_seconds: float = 1.0) -> tuple[Process, str]:
    port = free_port()
    process = Process(
        ["sandbox-provider", "--port", str(port), "--slow-seconds", str(slow_seconds)],
        {"CLEAVE_LOG_LEVEL": "WARNING"},
        directory / "sandbox.log",
    )
    url = f"http://127.0.0.1:{port}"
    _ready_or_closed(f"{url}/v1/stats", process)
    return process, url


def start_app(directory: Path, environment: Mapping[str, str]) -> tuple[Process, str]:
    port = free_port()
    process = Process(["run", "--port", str(port)], environment, directory / f"app-{port}.log")
    url = f"http://127.0.0.1:{port}"
    _ready_or_closed(f"{url}/health/ready", process)
    return process, url


def _ready_or_closed(url: str, process: Process) -> None:
    # A process that never became ready must not outlive the test that started it.
    try:
        wait_until_ready(url, process)
    except BaseException:
        process.close()
        raise
