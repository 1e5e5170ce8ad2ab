"""``cleave graph``: the module map, drawn from what the modules declare.

Every edge comes from a declaration the registry checks or a test holds to the code: a
module's contracts declare its commands, queries and events, list the events it subscribes to
(``SUBSCRIBES_TO``) and the commands and queries of other modules it sends (``SENDS``). The
map is drawn as mermaid (GitHub renders it) or DOT (graphviz); ``docs/modules.md`` is the map
and the recorded flows (``entrypoints.flow``) on one page, written by ``just docs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from kernel.errors import ConfigurationError
from kernel.messages import Command, Event, Message, Query, message_name
from kernel.module import declared_messages, subscribed_events
from kernel.registry import Registry

if TYPE_CHECKING:
    from entrypoints.flow import Scenario

#: The name, in a module's contracts, of the tuple of other modules' commands and queries
#: the module sends (synchronously, or deferred through its outbox).
SENDS = "SENDS"

Kind = Literal["command", "query", "event"]


def sent_messages(contracts: ModuleType) -> tuple[type[Message], ...]:
    """The commands and queries of other modules that a module's ``contracts`` say it sends."""
    return tuple(getattr(contracts, SENDS, ()))


@dataclass(frozen=True)
class Edge:
    """Messages of one kind going from one module to another: commands and queries to the
    module that handles them, events from their publisher to a subscriber."""

    source: str
    target: str
    kind: Kind
    messages: tuple[str, ...]


@dataclass(frozen=True)
class ModuleFacts:
    """What one module declares, by message name."""

    name: str
    commands: tuple[str, ...]
    queries: tuple[str, ...]
    events: tuple[str, ...]
    subscribes_to: tuple[str, ...]
    sends: tuple[str, ...]


@dataclass(frozen=True)
class ModuleMap:
    modules: tuple[ModuleFacts, ...]
    edges: tuple[Edge, ...]


def module_map(contracts: Mapping[str, ModuleType]) -> ModuleMap:
    """The map of the modules whose contracts are given (module name -> contracts), in that
    order; refuses a ``SENDS`` entry that is not another module's command or query."""
    registry = Registry([], contracts)
    problems: list[str] = []
    facts: list[ModuleFacts] = []
    grouped: dict[tuple[str, str, Kind], list[str]] = {}
    for name, module_contracts in contracts.items():
        own = declared_messages(module_contracts)
        sends = sent_messages(module_contracts)
        for message in sends:
            owner = registry.owners.get(message)
            if owner is None or owner == name or not issubclass(message, Command | Query):
                problems.append(
                    f"the contracts of {name!r} list {message!r} in {SENDS}, which is no "
                    "command or query of another module"
                )
                continue
            kind: Kind = "command" if issubclass(message, Command) else "query"
            grouped.setdefault((name, owner, kind), []).append(_short(message))
        for message in own:
            if issubclass(message, Event):
                for subscriber in registry.subscribers.get(message, []):
                    grouped.setdefault((name, subscriber, "event"), []).append(_short(message))
        facts.append(
            ModuleFacts(
                name=name,
                commands=_names(m for m in own if issubclass(m, Command)),
                queries=_names(m for m in own if issubclass(m, Query)),
                events=_names(m for m in own if issubclass(m, Event)),
                subscribes_to=_names(subscribed_events(module_contracts)),
                sends=_names(sends),
            )
        )
    if problems:
        raise ConfigurationError("the module map cannot be drawn:\n  - " + "\n  - ".join(problems))
    edges = tuple(
        Edge(source, target, kind, tuple(messages))
        for (source, target, kind), messages in grouped.items()
    )
    return ModuleMap(tuple(facts), edges)


def shop_map() -> ModuleMap:
    """The map of the shop's modules."""
    from entrypoints.bootstrap import shop_contracts

    return module_map(shop_contracts())


def _short(message: type[Message]) -> str:
    return message_name(message).rpartition(".")[2]


def _names(messages: Iterable[type[Message]]) -> tuple[str, ...]:
    return tuple(_short(message) for message in messages)


# -- drawing ----------------------------------------------------------------------------------

#: How each kind of message is drawn: commands solid, queries dotted, events thick.
_MERMAID_ARROWS: dict[Kind, str] = {"command": "-->", "query": "-.->", "event": "==>"}
_DOT_STYLES: dict[Kind, str] = {"command": "solid", "query": "dashed", "event": "bold"}


def mermaid(graph: ModuleMap) -> str:
    """The map as a mermaid flowchart."""
    lines = ["flowchart LR"]
    lines += [f"    {module.name}([{module.name}])" for module in graph.modules]
    for edge in graph.edges:
        label = "<br>".join(edge.messages)
        lines.append(f'    {edge.source} {_MERMAID_ARROWS[edge.kind]}|"{label}"| {edge.target}')
    return "\n".join(lines) + "\n"


def dot(graph: ModuleMap) -> str:
    """The map as a Graphviz DOT digraph."""
    import graphviz  # type: ignore[import-untyped]

    drawing = graphviz.Digraph("cleave", graph_attr={"rankdir": "LR"}, node_attr={"shape": "box"})
    for module in graph.modules:
        drawing.node(module.name)
    for edge in graph.edges:
        drawing.edge(
            edge.source,
            edge.target,
            label="\\n".join(edge.messages),  # DOT's own line break
            style=_DOT_STYLES[edge.kind],
        )
    return str(drawing.source)


# -- the page ---------------------------------------------------------------------------------

#: The flows docs/modules.md shows, in this order: (command, heading, what it shows).
PAGE_FLOWS: Sequence[tuple[str, str, str]] = (
    (
        "PlaceOrder",
        "How an order is settled",
        "Three orders recorded from a real run: one paid, one whose card is declined, one "
        "for more than the stock. The customer gets the order back at once (PENDING); the "
        "saga in `ordering` settles it through inventory and payments, each step a deferred "
        "command or an event delivered through the sender's outbox. An order that waits past "
        "`CLEAVE_ORDER_TIMEOUT_SECONDS` is compensated by the `ExpireOrders` timer instead.",
    ),
    (
        "AddProduct",
        "A product",
        "The catalog announces a product; inventory opens its stock record at zero.",
    ),
    (
        "RegisterUser",
        "A customer",
        "Identity announces a registration; notifications welcomes the user.",
    ),
)


def page(graph: ModuleMap, flows: Sequence[tuple[str, str]]) -> str:
    """docs/modules.md: the map, each module's declarations, and ``flows`` (one
    ``(heading and text, sequence diagram)`` per flow)."""
    out = [
        "# The module map",
        "",
        "<!-- Written by `just docs` (`cleave graph --format markdown`); "
        "tests/unit/entrypoints/test_graph.py fails when it is stale. Do not edit. -->",
        "",
        "Who sends what to whom, drawn from the modules' contracts: each module's commands,",
        "queries and events, the events it lists in `SUBSCRIBES_TO` and the other modules'",
        "commands and queries it lists in `SENDS` (a test holds `SENDS` to the code). Solid",
        "arrows are commands, dotted ones queries, thick ones events (publisher to subscriber).",
        "The HTTP API sends each module its own commands and queries; it is left out.",
        "",
        "```mermaid",
        mermaid(graph).rstrip("\n"),
        "```",
        "",
        "| module | commands | queries | publishes | subscribes to | sends |",
        "|---|---|---|---|---|---|",
    ]
    for module in graph.modules:
        cells = [
            module.commands,
            module.queries,
            module.events,
            module.subscribes_to,
            module.sends,
        ]
        out.append(
            f"| `{module.name}` | " + " | ".join(", ".join(cell) or "-" for cell in cells) + " |"
        )
    out += [
        "",
        "An event nobody subscribes to yet is published all the same (the table lists it); a",
        "new subscriber needs no change in the publisher.",
        "",
        "## Flows",
        "",
        "Recorded, not declared: `cleave graph --flow COMMAND` runs the whole shop in one",
        "process (in-process bus, a temporary SQLite file, the sandbox payment provider) and",
        "notes every message each handler sends, asks, defers or publishes, and where it is",
        "delivered. Where runs part ways the diagram branches (`alt`).",
    ]
    for text, diagram in flows:
        out += ["", text, "", "```mermaid", diagram.rstrip("\n"), "```"]
    return "\n".join(out) + "\n"


def shop_page(scenarios: Sequence[Scenario] | None = None) -> str:
    """docs/modules.md, from the shop's contracts and ``scenarios`` (default: a fresh
    recorded run)."""
    import asyncio

    from entrypoints.flow import record_shop, sequence_diagram

    if scenarios is None:
        scenarios = asyncio.run(record_shop())
    flows = [
        (f"### {heading} (`{command}`)\n\n{text}", sequence_diagram(scenarios, command))
        for command, heading, text in PAGE_FLOWS
    ]
    return page(shop_map(), flows)


def render(format: str, flow: str | None = None) -> str:
    """What ``cleave graph`` prints: the map (mermaid or dot), the whole page (markdown), or
    with ``flow`` the recorded flow of that command (mermaid only)."""
    if flow is not None:
        if format != "mermaid":
            raise ValueError("--flow draws a mermaid sequence diagram: leave --format out")
        import asyncio

        from entrypoints.flow import record_shop, sequence_diagram

        return sequence_diagram(asyncio.run(record_shop()), flow)
    if format == "markdown":
        return shop_page()
    if format == "dot":
        return dot(shop_map()) + "\n"
    return mermaid(shop_map())


#: Where a page embeds the map: ``cleave graph --into FILE`` rewrites what lies between.
MAP_START = "<!-- cleave graph -->\n```mermaid\n"
MAP_END = "```\n<!-- /cleave graph -->"


def with_map(text: str, graph: ModuleMap) -> str:
    """``text`` with the map put between its ``MAP_START`` and ``MAP_END`` markers."""
    start = text.find(MAP_START)
    end = text.find(MAP_END, start + 1)
    if start < 0 or end < 0:
        raise ValueError(f"no {MAP_START.splitlines()[0]} ... {MAP_END.splitlines()[1]} block")
    return text[: start + len(MAP_START)] + mermaid(graph) + text[end:]
