"""The registry refuses, at start-up and with a clear message, modules that do not fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import types
from pathlib import Path
from typing import Any

import pytest

from entrypoints.bootstrap import shop_modules
from kernel import Command, ConfigurationError, Event, Module, Query, Registry

ROOT = Path(__file__).resolve().parents[3]


def contracts_module(name: str, **classes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = __file__
    for cls in classes.values():
        if isinstance(cls, type):
            cls.__module__ = name
    module.__dict__.update(classes)
    return module


class Ping(Command[str], frozen=True, kw_only=True, tag="alpha.Ping"):
    text: str


class Peek(Query[int], frozen=True, kw_only=True, tag="alpha.Peek"):
    pass


class Pinged(Event, frozen=True, kw_only=True, tag="alpha.Pinged"):
    text: str


class Stray(Event, frozen=True, kw_only=True, tag="nowhere.Stray"):
    pass


ALPHA = contracts_module(
    "tests.fake.alpha.contracts", Ping=Ping, Peek=Peek, Pinged=Pinged, SUBSCRIBES_TO=(Pinged,)
)
BETA = contracts_module("tests.fake.beta.contracts")


async def ping(command: Ping) -> str:
    return command.text


async def peek(query: Peek) -> int:
    return 1


async def on_pinged(event: Pinged) -> None:
    return None


def test_the_shop_fits_together() -> None:
    registry = Registry(shop_modules())
    assert {module.name for module in shop_modules()} == set(registry.modules)


def test_a_command_without_a_handler_is_refused() -> None:
    alpha = Module(name="alpha", contracts=ALPHA, handlers={Peek: peek})
    with pytest.raises(ConfigurationError, match=r"Ping \(alpha.Ping\) .*has no handler"):
        Registry([alpha])


def test_a_second_handler_in_another_module_is_refused() -> None:
    alpha = Module(name="alpha", contracts=ALPHA, handlers={Ping: ping, Peek: peek})
    beta = Module(name="beta", contracts=BETA, handlers={Ping: ping})
    with pytest.raises(ConfigurationError, match="belongs to 'alpha'"):
        Registry([alpha, beta])


def test_a_subscription_to_an_undeclared_event_is_refused() -> None:
    alpha = Module(
        name="alpha",
        contracts=ALPHA,
        handlers={Ping: ping, Peek: peek},
        subscriptions={Stray: [on_pinged]},
    )
    with pytest.raises(ConfigurationError, match=r"subscribes to Stray .*no module's contracts"):
        Registry([alpha])


def test_every_problem_is_listed_at_once() -> None:
    alpha = Module(name="alpha", contracts=ALPHA, subscriptions={Stray: [on_pinged]})
    with pytest.raises(ConfigurationError) as refused:
        Registry([alpha])
    message = str(refused.value)
    assert "Ping" in message and "Peek" in message and "Stray" in message


def test_subscribers_and_handlers_are_found() -> None:
    alpha = Module(
        name="alpha",
        contracts=ALPHA,
        handlers={Ping: ping, Peek: peek},
        subscriptions={Pinged: [on_pinged]},
    )
    registry = Registry([alpha])
    assert registry.targets(Ping) == ["alpha"]
    assert registry.targets(Pinged) == ["alpha"]
    assert [endpoint.name for endpoint in registry.receivers("alpha", Ping)] == ["alpha.ping"]
    assert [e.name for e in registry.receivers("alpha", Pinged)] == ["alpha.on_pinged"]
    assert registry.owner(Pinged) == "alpha"


def test_a_remote_module_is_addressed_by_its_contracts_alone() -> None:
    beta = Module(name="beta", contracts=BETA)
    registry = Registry([beta], remote={"alpha": ALPHA})
    assert registry.owner(Ping) == "alpha" and "alpha" not in registry.modules
    assert registry.targets(Pinged) == ["alpha"]  # from alpha's SUBSCRIBES_TO
    assert registry.handlers == {} and registry.receivers("alpha", Pinged) == []


def test_a_subscription_the_contracts_do_not_list_is_refused() -> None:
    silent = contracts_module("tests.fake.silent.contracts")
    gamma = Module(name="gamma", contracts=silent, subscriptions={Pinged: [on_pinged]})
    with pytest.raises(ConfigurationError, match="do not list it in SUBSCRIBES_TO"):
        Registry([gamma], remote={"alpha": ALPHA})
    listing = contracts_module("tests.fake.listing.contracts", SUBSCRIBES_TO=(Pinged,))
    delta = Module(name="delta", contracts=listing)
    with pytest.raises(ConfigurationError, match="has no handler for it"):
        Registry([delta], remote={"alpha": ALPHA})


def test_a_module_importing_another_modules_internals_is_refused(tmp_path: Path) -> None:
    """The registry no longer reads module source at start-up: the boundary between modules
    is the import-linter contract of pyproject.toml, run in the suite (test_code_rules). Here
    that very contract, pointed at a throwaway shop, refuses an import of another module's
    internals (plain and relative) and lets its contracts through."""
    root = tmp_path / "fakeshop"
    for package in ("", "alpha", "beta"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").write_text("")
    (root / "alpha" / "contracts.py").write_text("HAPPENED = 1\n")
    (root / "alpha" / "domain.py").write_text("SECRET = 1\n")
    (root / "beta" / "contracts.py").write_text("from fakeshop.alpha.contracts import HAPPENED\n")
    (root / "beta" / "handlers.py").write_text("from ..alpha.domain import SECRET\n")
    (root / "beta" / "api.py").write_text("from fakeshop.alpha import domain\n")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [
        c
        for c in project["contracts"]
        if c["type"] == "independence" and c["modules"] == ["modules.*"]
    ]
    fake = {
        "root_packages": ["fakeshop"],
        "contracts": [
            {
                **contract,
                "modules": ["fakeshop.*"],
                "ignore_imports": [
                    rule.replace("modules", "fakeshop") for rule in contract["ignore_imports"]
                ],
            }
        ],
    }
    config = tmp_path / "linter.toml"
    config.write_text(_toml({"tool": {"importlinter": fake}}))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--config", str(config), "--no-cache"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "fakeshop.beta.handlers -> fakeshop.alpha.domain" in report
    assert "fakeshop.beta.api -> fakeshop.alpha.domain" in report
    assert "fakeshop.beta.contracts -> fakeshop.alpha.contracts" not in report


def _toml(value: dict[str, Any], prefix: str = "") -> str:
    """Just enough TOML for the linter's configuration (tables, arrays of tables, lists)."""
    lines: list[str] = []
    nested: list[str] = []
    for key, item in value.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(item, dict):
            nested.append(f"[{path}]\n" + _toml(item, path))
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            nested.extend(f"[[{path}]]\n" + _toml(entry, path) for entry in item)
        else:
            lines.append(f"{key} = {json.dumps(item)}")
    return "\n".join(lines) + "\n" + "\n".join(nested)
