"""`cleave graph`: the module map says who sends what to whom as the code does, the recorded
order flow shows every way an order settles, and docs/modules.md is current."""

from __future__ import annotations

import ast
import asyncio
import importlib
from pathlib import Path
from types import ModuleType

import pytest

from entrypoints.bootstrap import shop_contracts, shop_modules
from entrypoints.cli import main
from entrypoints.flow import Scenario, record_shop, sequence_diagram
from entrypoints.graph import (
    SENDS,
    Edge,
    mermaid,
    module_map,
    sent_messages,
    shop_map,
    shop_page,
    with_map,
)
from kernel.errors import ConfigurationError
from kernel.messages import Command, Message, Query
from kernel.registry import Registry

ROOT = Path(__file__).resolve().parents[3]
BUS_REQUESTS = {"send", "ask", "defer"}


@pytest.fixture(scope="module")
def scenarios() -> list[Scenario]:
    """One recorded run of the shop, shared by this file's tests (it takes seconds)."""
    return asyncio.run(record_shop())


def _requests_in_code(module_name: str, owners: dict[type[Message], str]) -> set[type[Message]]:
    """Other modules' commands and queries the module's code passes to ``*.send/ask/defer``
    as ``Name(...)``, found by reading its source."""
    package = f"modules.{module_name}"
    found: set[type[Message]] = set()
    for path in sorted((ROOT / "modules" / module_name).rglob("*.py")):
        dotted = ".".join(
            [package, *path.relative_to(ROOT / "modules" / module_name).with_suffix("").parts]
        )
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: ModuleType | None = None
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in BUS_REQUESTS
                and node.args
                and isinstance(node.args[0], ast.Call)
                and isinstance(node.args[0].func, ast.Name)
            ):
                continue
            names = names or importlib.import_module(dotted.removesuffix(".__init__"))
            message = getattr(names, node.args[0].func.id, None)
            if isinstance(message, type) and owners.get(message) not in (None, module_name):
                found.add(message)
    return found


@pytest.mark.parametrize("name", list(shop_contracts()))
def test_each_module_declares_exactly_the_requests_its_code_sends(name: str) -> None:
    """SENDS is what the map draws: a module that starts (or stops) asking another module
    for something must say so in its contracts, or the map would lie."""
    owners = Registry([], shop_contracts()).owners
    declared = set(sent_messages(shop_contracts()[name]))
    assert declared == _requests_in_code(name, owners), (
        f"modules/{name}/contracts.py: {SENDS} differs from what the module's code sends"
    )


def test_a_recorded_run_sends_nothing_undeclared(scenarios: list[Scenario]) -> None:
    """What the handlers actually did in a real run (three orders, a product, a customer):
    every other module's command or query they sent is in their SENDS, every event they
    published is their own."""
    contracts = shop_contracts()
    owners = Registry([], contracts).owners
    seen: set[tuple[str, str]] = set()
    for scenario in scenarios:
        for sent in scenario.recording.sent:
            if sent.sender is None:
                continue  # the client's own command
            cls = type(sent.message)
            owner = owners[cls]
            if issubclass(cls, Command | Query) and owner != sent.sender:
                assert cls in sent_messages(contracts[sent.sender]), (sent.sender, cls)
                seen.add((sent.sender, cls.__name__))
            elif sent.verb == "publish":
                assert owner == sent.sender, (sent.sender, cls)
    # The run did exercise the saga's requests, so the check above had something to check.
    assert {("ordering", "GetProducts"), ("ordering", "ReserveStock")} <= seen
    assert {("ordering", "CapturePayment"), ("ordering", "ReleaseStock")} <= seen


def test_the_map_draws_requests_to_their_handler_and_events_to_their_subscribers() -> None:
    edges = set(shop_map().edges)
    assert Edge("ordering", "catalog", "query", ("GetProducts",)) in edges
    assert Edge("ordering", "payments", "command", ("CapturePayment", "VoidPayment")) in edges
    assert Edge("catalog", "inventory", "event", ("ProductAdded",)) in edges
    assert (
        Edge(
            "ordering",
            "notifications",
            "event",
            ("OrderConfirmed", "OrderRejected", "OrderCancelled"),
        )
        in edges
    )
    # An event nobody subscribes to draws no arrow.
    assert not [edge for edge in edges if "OrderPlaced" in edge.messages]


def test_a_sends_entry_that_is_no_other_modules_request_is_refused() -> None:
    contracts = shop_contracts()
    real = contracts["ordering"]
    wrong = ModuleType(real.__name__)
    wrong.__dict__.update(vars(real))
    wrong.SENDS = (*real.SENDS, real.OrderPlaced, real.GetOrder)  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError) as refused:
        module_map({**contracts, "ordering": wrong})
    assert "OrderPlaced" in str(refused.value)
    assert "GetOrder" in str(refused.value)


def test_the_order_flow_shows_every_way_an_order_settles(scenarios: list[Scenario]) -> None:
    diagram = sequence_diagram(scenarios, "PlaceOrder")
    lines = [line.strip() for line in diagram.splitlines()]
    assert lines[0] == "sequenceDiagram"
    # The customer's call is answered before the saga goes on through the outboxes.
    assert lines.index("ordering-->>client: OrderView") < lines.index(
        "ordering-)inventory: defer ReserveStock"
    )
    assert "Note over ordering: publish OrderPlaced (no subscriber)" in lines
    paid = lines.index("alt paid (tok_ok)")
    declined = lines.index("else card declined (tok_declined)")
    short = lines.index("else more than in stock")
    assert paid < lines.index("ordering-)notifications: publish OrderConfirmed") < declined
    assert declined < lines.index("ordering-)notifications: publish OrderCancelled") < short
    assert short < lines.index("ordering-)notifications: publish OrderRejected")
    assert lines.count("alt paid (tok_ok), card declined (tok_declined)") == 1
    assert lines.count("end") == 2


def test_an_unrecorded_command_names_the_recorded_ones(scenarios: list[Scenario]) -> None:
    with pytest.raises(ValueError, match="recorded: AddProduct, PlaceOrder, RegisterUser"):
        sequence_diagram(scenarios, "Refund")


def test_cleave_graph_prints_the_map_as_mermaid_or_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph"]) == 0
    mermaid = capsys.readouterr().out
    assert mermaid.startswith("flowchart LR\n")
    assert '    ordering -.->|"GetProducts"| catalog\n' in mermaid
    assert main(["graph", "--format", "dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph cleave {")
    assert 'ordering -> payments [label="CapturePayment\\nVoidPayment" style=solid]' in dot


def test_cleave_graph_refuses_a_flow_in_dot(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "--flow", "PlaceOrder", "--format", "dot"]) == 1
    assert "--flow draws a mermaid sequence diagram" in capsys.readouterr().err


def test_docs_modules_md_is_fresh(scenarios: list[Scenario]) -> None:
    """docs/modules.md is the newcomer's map; after changing a contract or a flow, run
    `just docs` (cleave graph --format markdown --out docs/modules.md)."""
    page = (ROOT / "docs" / "modules.md").read_text(encoding="utf-8")
    assert page == shop_page(scenarios), "docs/modules.md is stale: run `just docs`"


def test_every_shop_module_is_on_the_map() -> None:
    assert [module.name for module in shop_map().modules] == [m.name for m in shop_modules()]


def test_the_readme_shows_the_current_map() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert with_map(readme, shop_map()) == readme, (
        "README.md's module map is stale: run `just docs`"
    )


def test_cleave_graph_into_replaces_only_the_marked_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n<!-- cleave graph -->\n```mermaid\nold map\n"
        "```\n<!-- /cleave graph -->\n\nafter\n",
        encoding="utf-8",
    )
    assert main(["graph", "--into", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == (
        "# Title\n\n<!-- cleave graph -->\n```mermaid\n"
        + mermaid(shop_map())
        + "```\n<!-- /cleave graph -->\n\nafter\n"
    )
    page.write_text("no markers\n", encoding="utf-8")
    assert main(["graph", "--into", str(page)]) == 1
    assert "no <!-- cleave graph --> ... <!-- /cleave graph --> block" in capsys.readouterr().err
    assert page.read_text(encoding="utf-8") == "no markers\n"
