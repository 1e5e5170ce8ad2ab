"""The chain of messages a command sets off, recorded from a real run of the shop.

``record_shop`` runs every module in one process (in-process bus, a temporary SQLite file,
the sandbox payment provider over real HTTP) and places three orders: one paid, one whose
card is declined, one for more than the stock. A transport wrapper and the bus's four verbs
note every message a handler sends, asks, defers or publishes and every delivery it causes;
``sequence_diagram`` draws the messages one command set off as a mermaid sequence diagram,
the scenarios that part ways as ``alt`` branches.

Recorded rather than declared: what a handler does next depends on its data (a declined
card, a missing SKU), and the recording is what the code did, not what someone wrote down.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kernel.bus import Call, MessageBus, Transport
from kernel.messages import SYSTEM, Command, Envelope, Message, Principal, message_name
from kernel.runtime import Runtime
from kernel.unit_of_work import current_unit_of_work

R = TypeVar("R")

#: The module whose handler runs in this task (set around each handled call).
_handling: ContextVar[str | None] = ContextVar("cleave_flow_handling", default=None)

#: Who starts a flow: the HTTP API (or any other caller from outside the modules).
CLIENT = "client"


@dataclass(frozen=True)
class Sent:
    """A message a handler of ``sender`` (None: a caller outside the modules) passed to the
    bus while handling message ``parent`` (None: outside any handler)."""

    sender: str | None
    parent: str | None
    verb: str  # send, ask, defer or publish
    message: Message


@dataclass(frozen=True)
class Hop:
    """A message arriving at ``module``: a call of its handler, or a delivery."""

    module: str
    envelope: Envelope


@dataclass
class Recording:
    """What the bus saw, in the order it saw it."""

    sent: list[Sent] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)

    def clear(self) -> None:
        self.sent.clear()
        self.hops.clear()

    def copy(self) -> Recording:
        return Recording(list(self.sent), list(self.hops))


class RecordingTransport:
    """Wraps a transport: notes each message it carries, and which module handles it."""

    def __init__(self, inner: Transport, recording: Recording) -> None:
        self._inner = inner
        self._recording = recording

    def requester(self, module: str, message: type[Message]) -> Call:
        return self._noted(module, self._inner.requester(module, message))

    def deliverer(self, module: str) -> Call:
        return self._noted(module, self._inner.deliverer(module))

    def _noted(self, module: str, call: Call) -> Call:
        hops = self._recording.hops

        async def noted(message: Message, envelope: Envelope) -> Any:
            hops.append(Hop(module, envelope))
            token = _handling.set(module)
            try:
                return await call(message, envelope)
            finally:
                _handling.reset(token)

        return noted


def record_bus(bus: MessageBus, recording: Recording) -> None:
    """Note every message passed to ``bus``, with the module whose handler passed it.

    The handlers hold this very bus (resolved once at start-up), so wrapping its methods on
    the instance is the one place that sees them all; the transport alone would miss an event
    nobody subscribes to and could not tell ``send`` from ``defer``.
    """

    def noting(verb: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def noted(message: Message, *args: Any, **kwargs: Any) -> Any:
            unit = current_unit_of_work()
            parent = unit.envelope.message_id if unit is not None else None
            recording.sent.append(Sent(_handling.get(), parent, verb, message))
            return await method(message, *args, **kwargs)

        return noted

    for verb in ("send", "ask", "defer", "publish"):
        setattr(bus, verb, noting(verb, getattr(bus, verb)))


# -- the workload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One run of ``command`` (its message name), told apart from the others in the diagram
    by ``label``; ``recording`` may also hold what timers did meanwhile."""

    label: str
    command: str
    recording: Recording


#: The orders placed: what the saga does with a paid, a declined and an unfillable order.
ORDERS = (
    ("paid (tok_ok)", "tok_ok", 2),
    ("card declined (tok_declined)", "tok_declined", 1),
    ("more than in stock", "tok_ok", 50),
)


async def record_shop() -> list[Scenario]:
    """Run the shop once in this process and record the flows of its main commands: adding
    a product and its stock, registering a customer, and the three orders of ``ORDERS``."""
    from modules.catalog.contracts import AddProduct
    from modules.identity.contracts import RegisterUser
    from modules.inventory.contracts import Restock
    from modules.ordering.contracts import OrderLineRequest, PlaceOrder

    scenarios: list[Scenario] = []
    async with _recorded_shop() as (runtime, recording):

        async def run(label: str, command: Command[R], principal: Principal | None = None) -> R:
            recording.clear()
            result = await runtime.bus.send(command, principal=principal)
            # Every reaction delivered, so that the recording holds the whole flow.
            if not await runtime.settle():
                raise RuntimeError(f"the shop did not settle after {label}")
            scenarios.append(Scenario(label, message_name(type(command)), recording.copy()))
            return result

        await run("a product", AddProduct(sku="TEA-1", name="Green tea", price_cents=450), SYSTEM)
        await run("restocked", Restock(sku="TEA-1", quantity=10), SYSTEM)
        user = await run(
            "a customer",
            RegisterUser(email="ada@example.com", password="analytical engine 1843", name="Ada"),
        )
        customer = Principal(subject=user.id, roles=("customer",))
        for label, token, quantity in ORDERS:
            lines = [OrderLineRequest(sku="TEA-1", quantity=quantity)]
            await run(label, PlaceOrder(lines=lines, payment_token=token), customer)
    return scenarios


@contextlib.asynccontextmanager
async def _recorded_shop() -> AsyncIterator[tuple[Runtime, Recording]]:
    from adapters.payments.http_provider import HttpPaymentProvider
    from adapters.payments.sandbox import SandboxPaymentProvider
    from adapters.sqlalchemy.database import Database
    from entrypoints.bootstrap import bootstrap, create_tables
    from entrypoints.settings import Settings

    recording = Recording()
    # Without ordering's price cache: every order's flow shows the prices it asks for (with
    # it, all but the first would find them cached; ADR 0018).
    settings = Settings(
        password_hash_cost="low", delivery_backoff_seconds=0.01, price_cache_seconds=0
    )
    with (
        tempfile.TemporaryDirectory(prefix="cleave-graph-") as folder,
        SandboxPaymentProvider(slow_seconds=1.0) as sandbox,
        _quiet(),
    ):
        database = Database(f"sqlite+aiosqlite:///{Path(folder) / 'shop.db'}")
        provider = HttpPaymentProvider.from_settings(sandbox.url, settings)
        try:
            await create_tables(database)
            runtime = bootstrap(
                database=database,
                settings=settings,
                payment_provider=provider,
                wrap_transport=lambda inner: RecordingTransport(inner, recording),
            )
            record_bus(runtime.bus, recording)
            await runtime.start()
            try:
                yield runtime, recording
            finally:
                await runtime.stop(grace=5)
        finally:
            await provider.close()
            await database.dispose()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The run's own logs (an order declined, a payment retried) are no part of the diagram."""
    loggers = [
        logging.getLogger(name) for name in ("cleave", "alembic", "stamina", "httpx", "uvicorn")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# -- the diagram ------------------------------------------------------------------------------


def sequence_diagram(scenarios: Sequence[Scenario], command: str) -> str:
    """A mermaid sequence diagram of what ``command`` (a message name such as
    ``PlaceOrder`` or ``ordering.PlaceOrder``) set off in each scenario that ran it."""
    runs = [
        (scenario.label, _steps(scenario.recording, _root(scenario)))
        for scenario in scenarios
        if command in (scenario.command, _short(scenario.command))
    ]
    if not runs:
        known = sorted({_short(scenario.command) for scenario in scenarios})
        raise ValueError(f"no recorded flow starts with {command}; recorded: {', '.join(known)}")
    participants: list[str] = [CLIENT]
    for _, steps in runs:
        for step in steps:
            for who in step.participants:
                if who not in participants:
                    participants.append(who)
    lines = ["sequenceDiagram", f"    actor {CLIENT}"]
    lines += [f"    participant {who}" for who in participants[1:]]
    lines += _merged(runs, 1)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _Step:
    text: str
    participants: tuple[str, ...]


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _root(scenario: Scenario) -> Hop:
    """The arrival of the scenario's command (a timer's command is another root)."""
    return next(
        hop
        for hop in scenario.recording.hops
        if hop.envelope.causation_id is None and hop.envelope.name == scenario.command
    )


def _steps(recording: Recording, root: Hop) -> list[_Step]:
    """The root's arrival, then for every handled message: its synchronous calls (each with
    what it set off), its answer, what it emitted, and what each emitted message set off."""
    steps: list[_Step] = []
    caller = _sender_of(recording, root) or CLIENT
    verb = _verb_of(recording, root)
    steps.append(_arrow(caller, "->>", root.module, f"{verb} {_short(root.envelope.name)}"))
    _handled(recording, root, caller, steps)
    return steps


def _handled(recording: Recording, hop: Hop, caller: str, steps: list[_Step]) -> None:
    own = [
        sent
        for sent in recording.sent
        if sent.parent == hop.envelope.message_id and sent.sender == hop.module
    ]
    children = [h for h in recording.hops if h.envelope.causation_id == hop.envelope.message_id]
    for sent in own:
        if sent.verb in ("send", "ask"):
            name = message_name(type(sent.message))
            called = next(h for h in children if h.envelope.name == name)
            children.remove(called)
            label = f"{sent.verb} {_short(name)}"
            steps.append(_arrow(hop.module, "->>", called.module, label))
            _handled(recording, called, hop.module, steps)
    if _verb_of(recording, hop) in ("send", "ask"):
        steps.append(_arrow(hop.module, "-->>", caller, _answer(hop, recording)))
    later: list[Hop] = []
    for sent in own:
        if sent.verb not in ("defer", "publish"):
            continue
        name = message_name(type(sent.message))
        delivered = [h for h in children if h.envelope.name == name]
        first = delivered[:1]
        # One emitted message has one envelope, shared by its deliveries to every subscriber.
        same = [
            h for h in delivered if first and h.envelope.message_id == first[0].envelope.message_id
        ]
        label = f"{sent.verb} {_short(name)}"
        if not same:
            steps.append(_Step(f"Note over {hop.module}: {label} (no subscriber)", (hop.module,)))
        for target in sorted(same, key=lambda h: h.module):  # stable, however they arrived
            children.remove(target)
            steps.append(_arrow(hop.module, "-)", target.module, label))
        later.extend(same)
    for target in later:
        _handled(recording, target, hop.module, steps)


def _arrow(source: str, arrow: str, target: str, label: str) -> _Step:
    return _Step(f"{source}{arrow}{target}: {label}", (source, target))


def _sender_of(recording: Recording, hop: Hop) -> str | None:
    for sent in recording.sent:
        if sent.parent is None and message_name(type(sent.message)) == hop.envelope.name:
            return sent.sender
    return None


def _verb_of(recording: Recording, hop: Hop) -> str:
    """How the message of ``hop`` was passed to the bus: a deferred command or an event is
    delivered by a relay, a sent command or asked query is a call its sender waits on."""
    for sent in recording.sent:
        if message_name(type(sent.message)) == hop.envelope.name and (
            sent.parent == hop.envelope.causation_id
        ):
            return sent.verb
    return "send"


def _answer(hop: Hop, recording: Recording) -> str:
    """What the handler of ``hop`` answers, as its message class declares (``Command[R]``)."""
    for sent in recording.sent:
        if message_name(type(sent.message)) == hop.envelope.name:
            for base in getattr(type(sent.message), "__orig_bases__", ()):
                for argument in typing.get_args(base):
                    return _type_label(argument)
    return "answer"


def _type_label(annotation: Any) -> str:
    arguments = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is list and arguments:
        return f"list of {_type_label(arguments[0])}"
    if annotation is None or annotation is type(None):
        return "nothing"
    return getattr(annotation, "__name__", str(annotation))


def _merged(runs: Sequence[tuple[str, list[_Step]]], depth: int) -> list[str]:
    """The steps every run shares, then an ``alt`` with one branch per way the runs part."""
    indent = "    " * depth
    lines: list[str] = []
    position = 0
    while True:
        nexts = [steps[position].text if position < len(steps) else None for _, steps in runs]
        if len(set(nexts)) != 1:
            break
        if nexts[0] is None:
            return lines
        lines.append(indent + nexts[0])
        position += 1
    branches: dict[str | None, list[tuple[str, list[_Step]]]] = {}
    for (label, steps), step in zip(runs, nexts, strict=True):
        branches.setdefault(step, []).append((label, steps[position:]))
    for index, group in enumerate(branches.values()):
        keyword = "alt" if index == 0 else "else"
        lines.append(f"{indent}{keyword} {', '.join(label for label, _ in group)}")
        body = _merged(group, depth + 1)
        lines += body or [f"{indent}    Note over {CLIENT}: nothing more"]
    lines.append(f"{indent}end")
    return lines
