"""``cleave up`` as a user runs it: every process ready, then all of them gone on Ctrl-C or
SIGTERM, none left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from entrypoints.up import ROOT
from tests.support.deployments import TEST_ENVIRONMENT, free_ports, topology_file

pytestmark = pytest.mark.slow


def mixed_on_free_ports(directory: Path) -> tuple[Path, int]:
    text = topology_file("mixed").read_text()
    ports = {old: free_ports(1) for old in (8000, 8201, 8202)}
    for old, new in ports.items():
        text = text.replace(f"port = {old}", f"port = {new}")
    path = directory / "mixed.toml"
    path.write_text(text)
    return path, ports[8000]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its exit status.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


@pytest.mark.parametrize("stop_with", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_starts_every_process_and_stops_them_all(tmp_path: Path, stop_with: int) -> None:
    path, gateway_port = mixed_on_free_ports(tmp_path)
    environment = {**os.environ, **TEST_ENVIRONMENT, "CLEAVE_DATA_DIR": str(tmp_path / "data")}
    up = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "up", "--topology", str(path)],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        end = time.monotonic() + 90
        while time.monotonic() < end:
            line = up.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "the shop is up" in line:
                break
        output = "".join(lines)
        assert "the shop is up" in output, output
        ready = re.findall(r"ready\s+(\S+)\s+\S+\s+pid (\d+)", output)
        assert {name for name, _ in ready} == {"sandbox", "gateway", "stock", "checkout"}
        pids = [int(pid) for _, pid in ready]
        answer = httpx.get(f"http://127.0.0.1:{gateway_port}/api/v1/catalog/products", timeout=10)
        assert answer.status_code == 200

        up.send_signal(stop_with)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest
        assert "stopped" in rest
        left = [pid for pid in pids if alive(pid)]
        assert left == [], f"processes left behind: {left}"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait(timeout=30)
