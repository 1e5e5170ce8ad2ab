"""``cleave users create-admin`` takes the password from anywhere but its command line,
where every user of the machine reads it (``ps``): standard input, the environment, or a
prompt that does not echo."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.sqlalchemy.database import Database
from entrypoints.bootstrap import bootstrap
from kernel import Unauthenticated
from modules.identity.contracts import LogIn
from tests.support.harness import TEST_SETTINGS
from tests.support.processes import ROOT

pytestmark = pytest.mark.anyio

PASSWORD = "long enough pw"
COMMAND = [sys.executable, "-m", "entrypoints.cli", "users", "create-admin"]


def environment(url: str, **variables: str) -> dict[str, str]:
    # Only this test's CLEAVE_* variables: none leaks in from the environment running it.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLEAVE_")}
    return {
        **clean,
        "CLEAVE_DATABASE_URL": url,
        "CLEAVE_LOG_LEVEL": "ERROR",
        "CLEAVE_PASSWORD_HASH_COST": "low",
        **variables,
    }


def create_admin(
    url: str, *arguments: str, stdin: str = "", **variables: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *arguments],
        cwd=ROOT,
        env=environment(url, **variables),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def may_log_in(url: str, email: str, password: str) -> bool:
    database = Database(url)
    try:
        runtime = bootstrap(database=database, settings=TEST_SETTINGS, hosted=["identity"])
        await runtime.bus.send(LogIn(email=email, password=password))
    except Unauthenticated:
        return False
    finally:
        await database.dispose()
    return True


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"


async def test_the_password_comes_from_standard_input(url: str) -> None:
    made = create_admin(url, "--email", "boss@example.com", "--password-stdin", stdin=PASSWORD)
    assert made.returncode == 0, made.stderr
    assert "admin boss@example.com" in made.stdout
    assert await may_log_in(url, "boss@example.com", PASSWORD)
    # One line: what follows the first line break is not part of it.
    again = create_admin(
        url, "--email", "boss@example.com", "--password-stdin", stdin=f"{PASSWORD}\r\nmore\n"
    )
    assert again.returncode == 0, again.stderr
    assert await may_log_in(url, "boss@example.com", PASSWORD)


async def test_the_password_comes_from_the_environment(url: str) -> None:
    made = create_admin(url, "--email", "boss@example.com", CLEAVE_ADMIN_PASSWORD=PASSWORD)
    assert made.returncode == 0, made.stderr
    assert await may_log_in(url, "boss@example.com", PASSWORD)


def test_a_password_on_the_command_line_is_refused_saying_what_to_do(url: str) -> None:
    refused = create_admin(url, "--email", "boss@example.com", "--password", PASSWORD)
    assert refused.returncode == 1
    assert "ps" in refused.stderr and "--password-stdin" in refused.stderr
    assert "CLEAVE_ADMIN_PASSWORD" in refused.stderr and "Traceback" not in refused.stderr


def test_without_a_terminal_or_a_password_it_says_where_to_give_one(url: str) -> None:
    refused = create_admin(url, "--email", "boss@example.com")  # stdin is not a terminal
    assert refused.returncode == 1
    assert "--password-stdin" in refused.stderr and "Traceback" not in refused.stderr
    empty = create_admin(url, "--email", "boss@example.com", "--password-stdin", stdin="\n")
    assert empty.returncode == 1 and "empty" in empty.stderr


def read_until(fd: int, wanted: bytes, timeout: float = 60.0) -> bytes:
    """What ``fd`` says until ``wanted`` (a prompt) appears."""
    seen = b""
    give_up = time.monotonic() + timeout
    while wanted not in seen:
        left = give_up - time.monotonic()
        assert left > 0, f"no {wanted!r} in {seen!r}"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 1024)
            assert chunk, f"closed before {wanted!r}: {seen!r}"
            seen += chunk
    return seen


def type_at_the_prompts(url: str, password: str) -> tuple[int, str, bytes]:
    """Run create-admin with a terminal as standard input and type ``password`` at each
    prompt; its exit status and output, and what the terminal echoed."""
    controller, terminal = os.openpty()
    process = subprocess.Popen(
        [*COMMAND, "--email", "boss@example.com"],
        cwd=ROOT,
        env=environment(url),
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no controlling terminal: getpass uses standard input
    )
    os.close(terminal)
    assert process.stderr is not None and process.stdout is not None
    try:
        prompts = process.stderr.fileno()
        read_until(prompts, b"Password for the admin: ")
        os.write(controller, f"{password}\n".encode())
        read_until(prompts, b"The same again: ")
        os.write(controller, f"{password}\n".encode())
        status = process.wait(timeout=120)
        return status, process.stdout.read().decode(), echoed_by(controller)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()
        os.close(controller)


def echoed_by(controller: int) -> bytes:
    """What the terminal shows: what was echoed stays readable after the process ends, and
    reading an empty one whose other end is closed fails (EIO)."""
    try:
        return os.read(controller, 4096)
    except OSError:
        return b""


async def test_at_a_terminal_it_prompts_twice_without_echo(url: str) -> None:
    status, output, echoed = type_at_the_prompts(url, PASSWORD)
    assert status == 0
    assert "admin boss@example.com" in output
    assert PASSWORD.encode() not in echoed  # the terminal showed nothing of it
    assert await may_log_in(url, "boss@example.com", PASSWORD)
