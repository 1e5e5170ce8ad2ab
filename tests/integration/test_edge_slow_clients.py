"""Slow and abundant clients against the real server (issue 11, item 11): a request head or
body that never finishes is cut off at its deadline, connections past the limit are
refused at once, and a process short of file descriptors does not flood its log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT, Process, free_port, start_app, wait_until_ready

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 2
#: How long a test waits for the server to close a connection before calling it held.
PATIENCE = HEADER_TIMEOUT + 20


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        "CLEAVE_PASSWORD_HASH_COST": "low",
        "CLEAVE_PAYMENT_PROVIDER_URL": "http://127.0.0.1:9",
        "CLEAVE_LOG_LEVEL": "WARNING",
        "CLEAVE_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "CLEAVE_BODY_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        **extra,
    }


def open_slow(url: str, count: int, first_bytes: bytes) -> list[socket.socket]:
    """``count`` connections that send ``first_bytes`` of a request and nothing more."""
    port = int(url.rsplit(":", 1)[1])
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def read_until_closed(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before it closed the connection; None if it kept it open
    past ``deadline`` (a ``time.monotonic()``)."""
    received = b""
    try:
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(4096)
            if not chunk:
                return received
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return received


def all_endings(sockets: list[socket.socket]) -> list[bytes | None]:
    deadline = time.monotonic() + PATIENCE
    return [read_until_closed(sock, deadline) for sock in sockets]


class FileLimitedApp(Process):
    """``cleave run`` allowed ``files`` open files, soft and hard: it cannot raise the limit."""

    def __init__(self, port: int, environment: dict[str, str], log: Path, files: int) -> None:
        self.log = log
        self._log_file = log.open("ab")
        self.popen = subprocess.Popen(
            [
                *("prlimit", f"--nofile={files}:{files}"),
                *(sys.executable, "-m", "entrypoints.cli", "run", "--port", str(port)),
            ],
            cwd=ROOT,
            env={**os.environ, **environment},
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def close_afterwards() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def test_heads_that_never_finish_are_cut_off_and_the_excess_refused(
    tmp_path: Path, close_afterwards: list[socket.socket]
) -> None:
    process, url = start_app(tmp_path, environment(tmp_path, CLEAVE_MAX_CONNECTIONS="150"))
    try:
        started = time.monotonic()
        slow = open_slow(url, 200, b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        close_afterwards.extend(slow)
        endings = all_endings(slow)
        closed_within = time.monotonic() - started
        print(f"200 unfinished heads: all closed within {closed_within:.1f} s")
        assert None not in endings, "a connection with an unfinished head was held open"
        refused = [ending for ending in endings if ending and b" 503 " in ending]
        assert refused, "no connection past the limit was refused"
        assert all(b"retry-after: 1" in ending.lower() for ending in refused)
        # The server is free again for ordinary requests.
        assert httpx.get(url + "/health/live", timeout=10).status_code == 200
    finally:
        process.close()


def test_a_body_that_stops_halfway_gets_a_408(
    tmp_path: Path, close_afterwards: list[socket.socket]
) -> None:
    process, url = start_app(tmp_path, environment(tmp_path))
    try:
        head = (
            b"POST /api/v1/identity/login HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        )
        (sock,) = open_slow(url, 1, head + b'{"email": "a')
        close_afterwards.append(sock)
        (ending,) = all_endings([sock])
        assert ending is not None, "a connection with an unfinished body was held open"
        assert ending.startswith(b"HTTP/1.1 408 "), ending
        assert b"application/problem+json" in ending
        assert httpx.get(url + "/health/live", timeout=10).status_code == 200
    finally:
        process.close()


def test_more_connections_than_files_neither_flood_the_log_nor_stop_the_server(
    tmp_path: Path, close_afterwards: list[socket.socket]
) -> None:
    port = free_port()
    log = tmp_path / "app.log"
    process = FileLimitedApp(port, environment(tmp_path), log, files=256)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url + "/health/ready", process)
        started = time.monotonic()
        slow = open_slow(url, 400, b"")  # connected, never a byte
        close_afterwards.extend(slow)
        endings = all_endings(slow)
        print(
            f"400 silent connections at 256 files: all closed in {time.monotonic() - started:.1f} s"
        )
        assert None not in endings, "a silent connection was held open"
        assert httpx.get(url + "/health/live", timeout=10).status_code == 200
        size = log.stat().st_size
        print(f"log: {size} bytes")
        assert size < 20_000, process.output()
    finally:
        process.close()
