"""Checks that a set of modules fits together, and answers "who handles this message?".

Built at start-up from the modules a process hosts and the contracts of every other module,
it lists every problem at once: a command or query without a handler or with two, a handler
for another module's message, an event nobody declares, a message name used twice. (That
modules import only each other's ``contracts`` is import-linter's check, in the tests.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from kernel.errors import ConfigurationError
from kernel.messages import Command, Event, Message, MessageKind, Query, message_kind, message_name
from kernel.module import (
    SUBSCRIBES_TO,
    Handler,
    Module,
    declared_messages,
    handler_name,
    subscribed_events,
)


@dataclass(frozen=True)
class Endpoint:
    """One handler of a module hosted in this process."""

    name: str
    module: str
    message: type[Message]
    handler: Handler
    kind: MessageKind


class Registry:
    """The validated map of messages to the modules that own them and the handlers that run
    them. ``modules`` are hosted here; ``remote`` maps every other module's name to its
    contracts, which are all it takes to address it."""

    def __init__(
        self, modules: Sequence[Module], remote: Mapping[str, ModuleType] | None = None
    ) -> None:
        problems: list[str] = []
        #: The modules hosted here, by name.
        self.modules: dict[str, Module] = {}
        #: The contracts of every module of the system, hosted here or not.
        self.contracts: dict[str, ModuleType] = {}
        #: The module whose contracts declare each message class.
        self.owners: dict[type[Message], str] = {}
        #: Every declared message class, by its wire name.
        self.types: dict[str, type[Message]] = {}
        #: Module names subscribed to each event, as every module's contracts declare.
        self.subscribers: dict[type[Message], list[str]] = {}
        #: The handler of each command and query of the modules hosted here.
        self.handlers: dict[type[Message], Endpoint] = {}
        #: The handlers of each (hosted module, subscribed event).
        self.subscriptions: dict[tuple[str, type[Message]], list[Endpoint]] = {}
        #: Every handler hosted here, by its name (the inbox and dead letters use it).
        self.endpoints: dict[str, Endpoint] = {}

        self._add_modules(modules, remote or {}, problems)
        self._add_messages(problems)
        self._add_subscribers(problems)
        for module in modules:
            self._add_handlers(module, problems)
            self._add_subscriptions(module, problems)
        self._check_requests_handled(problems)
        if problems:
            raise ConfigurationError(
                "the modules do not fit together:\n  - " + "\n  - ".join(problems)
            )

    def _add_modules(
        self, modules: Sequence[Module], remote: Mapping[str, ModuleType], problems: list[str]
    ) -> None:
        for module in modules:
            if module.name in self.modules:
                problems.append(f"two modules are named {module.name!r}")
            self.modules[module.name] = module
            self.contracts[module.name] = module.contracts
        for name, contracts in remote.items():
            if name in self.contracts:
                problems.append(f"module {name!r} is both hosted here and remote")
            self.contracts[name] = contracts

    def _add_messages(self, problems: list[str]) -> None:
        for name, contracts in self.contracts.items():
            for cls in declared_messages(contracts):
                tag = message_name(cls)
                known = self.types.get(tag)
                if known is not None and known is not cls:
                    problems.append(
                        f"message name {tag!r} is used by both "
                        f"{known.__module__}.{known.__qualname__} and "
                        f"{cls.__module__}.{cls.__qualname__}"
                    )
                self.types[tag] = cls
                self.owners[cls] = name

    def _add_subscribers(self, problems: list[str]) -> None:
        for name, contracts in self.contracts.items():
            for event in subscribed_events(contracts):
                if event not in self.owners or not issubclass(event, Event):
                    problems.append(
                        f"the contracts of {name!r} list {_label(event)} in {SUBSCRIBES_TO}, "
                        "which is no event of any module's contracts"
                    )
                    continue
                self.subscribers.setdefault(event, []).append(name)

    def _check_requests_handled(self, problems: list[str]) -> None:
        for cls, owner in self.owners.items():
            hosted_request = owner in self.modules and issubclass(cls, Command | Query)
            if hosted_request and cls not in self.handlers:
                problems.append(f"{_label(cls)} (declared by {owner!r}) has no handler")

    def _add_handlers(self, module: Module, problems: list[str]) -> None:
        for cls, handler in module.handlers.items():
            owner = self.owners.get(cls)
            label = _label(cls)
            if owner is None:
                problems.append(
                    f"module {module.name!r} handles {label}, which no module's contracts declare"
                )
            elif owner != module.name:
                problems.append(
                    f"module {module.name!r} handles {label}, which belongs to {owner!r}: "
                    "a module handles only its own commands and queries"
                )
            elif issubclass(cls, Event):
                problems.append(
                    f"module {module.name!r} lists event {label} under handlers; "
                    "events go under subscriptions"
                )
            else:
                endpoint = self._endpoint(module.name, cls, handler, problems)
                if cls in self.handlers:
                    problems.append(
                        f"{label} has two handlers: {self.handlers[cls].name} and {endpoint.name}"
                    )
                self.handlers[cls] = endpoint

    def _add_subscriptions(self, module: Module, problems: list[str]) -> None:
        declared = set(subscribed_events(module.contracts))
        for event, handlers in module.subscriptions.items():
            label = _label(event)
            if event not in self.owners:
                problems.append(
                    f"module {module.name!r} subscribes to {label}, "
                    "which no module's contracts declare"
                )
            elif not issubclass(event, Event):
                problems.append(f"module {module.name!r} subscribes to {label}, not an Event")
            elif event not in declared:
                problems.append(
                    f"module {module.name!r} subscribes to {label}, but its contracts do not "
                    f"list it in {SUBSCRIBES_TO}: a publisher in another process would never "
                    "deliver it"
                )
            else:
                self.subscriptions[(module.name, event)] = [
                    self._endpoint(module.name, event, handler, problems) for handler in handlers
                ]
        for event in declared - set(module.subscriptions):
            problems.append(
                f"the contracts of {module.name!r} list {_label(event)} in {SUBSCRIBES_TO}, "
                "but the module has no handler for it"
            )

    def _endpoint(
        self, module: str, cls: type[Message], handler: Handler, problems: list[str]
    ) -> Endpoint:
        endpoint = Endpoint(
            name=handler_name(module, handler),
            module=module,
            message=cls,
            handler=handler,
            kind=message_kind(cls),
        )
        known = self.endpoints.get(endpoint.name)
        if known is not None and known.message is not cls:
            problems.append(
                f"handler name {endpoint.name!r} is used for both {_label(known.message)} "
                f"and {_label(cls)}; give each its own function"
            )
        self.endpoints[endpoint.name] = endpoint
        return endpoint

    def targets(self, message: type[Message]) -> list[str]:
        """The modules a message emitted through an outbox goes to: the owner of a command,
        every subscriber of an event."""
        if issubclass(message, Event):
            return self.subscribers.get(message, [])
        return [self.owners[message]]

    def receivers(self, module: str, message: type[Message]) -> list[Endpoint]:
        """The handlers of hosted ``module`` that a delivery of ``message`` runs."""
        if issubclass(message, Event):
            return self.subscriptions.get((module, message), [])
        endpoint = self.handlers.get(message)
        return [endpoint] if endpoint is not None and endpoint.module == module else []

    def owner(self, message: type[Message]) -> str:
        """The module whose contracts declare ``message``."""
        return self.owners[message]

    def message_types(self) -> Iterable[type[Message]]:
        """Every declared message class."""
        return self.types.values()


def _label(cls: type[Any]) -> str:
    tag = getattr(getattr(cls, "__struct_config__", None), "tag", None)
    return f"{cls.__qualname__} ({tag})" if isinstance(tag, str) else cls.__qualname__
