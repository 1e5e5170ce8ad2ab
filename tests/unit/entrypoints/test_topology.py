"""A topology that cannot run is refused before anything starts, each problem with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.cli import main
from entrypoints.topology import TopologyError, load_topology, parse_topology
from entrypoints.up import ROOT

MODULES = list(SHOP_PACKAGES)
REST = """
[services.rest]
modules = ["identity", "ordering", "payments", "notifications"]
port = 8110
"""


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(TopologyError) as refused:
        parse_topology(textwrap.dedent(text), "t.toml", MODULES, environ or {})
    return refused.value.problems


def test_the_shipped_topologies_are_valid() -> None:
    for name in ("monolith", "split-http", "mixed"):
        topology = load_topology(ROOT / "topologies" / f"{name}.toml", MODULES, {})
        hosted = sorted(m for service in topology.services for m in service.modules)
        assert hosted == sorted(MODULES), name
        assert topology.gateway is not None


def test_an_unknown_module_is_named_with_its_line() -> None:
    found = problems(
        """
        [services.gateway]
        public = true
        port = 8000

        [services.stock]
        modules = ["catalog", "inventory", "warehouse"]
        port = 8101
        """
        + REST
    )
    assert found == [
        f"t.toml:7: service 'stock' hosts unknown module 'warehouse' (known: {', '.join(MODULES)})"
    ]


def test_a_module_hosted_twice_a_port_clash_and_an_unknown_key() -> None:
    found = problems(
        """
        [services.gateway]
        public = true
        port = 8000

        [services.one]
        modules = ["catalog", "inventory"]
        port = 8101

        [services.two]
        modules = ["inventory"]
        port = 8101
        replicas = 2
        """
        + REST
    )
    assert any(p.startswith("t.toml:11: module 'inventory' is hosted twice") for p in found)
    assert any(
        p.startswith("t.toml:12: port 8101 of 'two' is already taken by 'one'") for p in found
    )
    assert any(p.startswith("t.toml:13: service 'two': unknown key 'replicas'") for p in found)


def test_a_module_hosted_nowhere_needs_an_address() -> None:
    found = problems(
        """
        [services.gateway]
        public = true
        port = 8000
        modules = ["identity", "ordering", "payments", "notifications", "catalog"]
        """
    )
    assert found == [
        "t.toml: module 'inventory' is hosted by no service and has no address (add it to a "
        "service's modules, or a [remote.inventory] url)"
    ]
    topology = parse_topology(
        textwrap.dedent(
            """
            [services.gateway]
            public = true
            port = 8000
            modules = ["identity", "ordering", "payments", "notifications", "catalog"]

            [remote.inventory]
            url = "http://stock.internal:8000"
            """
        ),
        "t.toml",
        MODULES,
        {},
    )
    assert topology.addresses("inventory", {}) == ["http://stock.internal:8000"]
    assert topology.addresses("inventory", {"CLEAVE_INVENTORY_URL": "http://a:1, http://b:2"}) == [
        "http://a:1",
        "http://b:2",
    ]


def test_several_instances_need_postgresql() -> None:
    text = (
        """
        [services.gateway]
        public = true
        port = 8000

        [services.stock]
        modules = ["catalog", "inventory"]
        port = 8101
        instances = 2
        """
        + REST
    )
    found = problems(text)
    assert found[0].startswith("t.toml:9: 2 instances of 'stock' cannot share 'catalog'")
    assert "CLEAVE_CATALOG_DATABASE_URL" in found[0]
    postgres = {
        "CLEAVE_CATALOG_DATABASE_URL": "postgresql://db/catalog",
        "CLEAVE_INVENTORY_DATABASE_URL": "postgresql://db/inventory",
    }
    topology = parse_topology(textwrap.dedent(text), "t.toml", MODULES, postgres)
    stock = topology.service("inventory")
    assert stock.name == "stock" and stock.urls() == [
        "http://127.0.0.1:8101",
        "http://127.0.0.1:8102",
    ]


def test_cleave_topology_check_prints_the_plan_or_the_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["topology", "check", str(ROOT / "topologies" / "split-http.toml")]) == 0
    plan = capsys.readouterr().out
    assert "7 processes" in plan and "http://127.0.0.1:8103" in plan and "inventory.db" in plan
    broken = tmp_path / "broken.toml"
    broken.write_text("[services.gateway]\npublic = true\n")
    assert main(["topology", "check", str(broken)]) == 1
    error = capsys.readouterr().err
    assert f"{broken}:1: service 'gateway' serves HTTP but has no port" in error
