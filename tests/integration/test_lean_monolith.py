"""The monolith on SQLite loads only what it uses: no queue, PostgreSQL or test libraries,
and zxcvbn's dictionaries (about 12 MiB) only once a password is judged.

Each case runs a fresh interpreter (this one has loaded everything already) that starts the
real app with its lifespan and lists the libraries it has loaded. The figures behind it:
``python -m bench.memory_breakdown``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT

#: Started, served a request, registered an account, and said what it had loaded when.
SHOP = """
import json, sys
from litestar.testing import TestClient
from entrypoints.app import create_app

def loaded():
    return sorted({name.split(".")[0] for name, module in sys.modules.items() if module})

with TestClient(create_app()) as client:
    ready = client.get("/health/ready").status_code
    idle = loaded()
    weak = client.post("/api/v1/identity/register", json={
        "email": "ada@example.com", "password": "password123", "name": "Ada"}).status_code
    strong = client.post("/api/v1/identity/register", json={
        "email": "ada@example.com", "password": "correct horse battery staple",
        "name": "Ada"}).status_code
    print(json.dumps({"ready": ready, "idle": idle, "weak": weak, "strong": strong,
                      "after": loaded()}))
"""

#: Libraries `cleave run` on SQLite has no use for (queues, PostgreSQL, tests).
UNUSED = {"dramatiq", "pika", "redis", "asyncpg", "hypothesis", "schemathesis", "pytest"}


def run_shop(tmp_path: Path) -> dict[str, object]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("CLEAVE_")
    }
    environment.update(
        CLEAVE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
        CLEAVE_LOG_LEVEL="ERROR",
        CLEAVE_PASSWORD_HASH_COST="low",
    )
    answer = subprocess.run(
        [sys.executable, "-c", SHOP],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    result: dict[str, object] = json.loads(answer.stdout.strip().splitlines()[-1])
    return result


def test_the_monolith_loads_no_queue_database_or_test_library_and_judges_passwords_on_demand(
    tmp_path: Path,
) -> None:
    shop = run_shop(tmp_path)
    assert shop["ready"] == 200
    idle = set(shop["idle"])  # type: ignore[arg-type]
    assert not idle & UNUSED, f"loaded at start for nothing: {sorted(idle & UNUSED)}"
    assert "zxcvbn" not in idle
    # Passwords are still judged, by zxcvbn, once one is asked about.
    assert shop["weak"] == 400
    assert shop["strong"] == 201
    assert "zxcvbn" in set(shop["after"])  # type: ignore[arg-type]


def test_a_library_hidden_during_an_import_is_importable_afterwards() -> None:
    script = (
        "import sys\n"
        "from adapters.optional_imports import hidden\n"
        "with hidden('redis'):\n"
        "    import purgatory\n"
        "print('redis' in sys.modules)\n"
        "import redis.asyncio\n"
        "with hidden('redis'):\n"  # already loaded: left alone
        "    pass\n"
        "print(sys.modules['redis'] is redis)\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.split() == ["False", "True"]
