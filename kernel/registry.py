"""Checks that a set of modules fits together, and answers "who handles this message?".

Built once at start-up from the declarations of the modules a process hosts and the contracts
of every other module. It refuses, with one message listing every problem, a command or query
without a handler or with two, a handler for another module's message, an event subscribed to
that no module declares (or that the subscriber's contracts do not list), a message name used
twice, and a module that imports another module's internals (anything but its ``contracts``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    them.

    ``modules`` are the modules this process hosts (their handlers run here); ``remote`` maps
    the name of every other module of the system to its contracts, which are all a process
    needs to address it: who owns a command or query, and who subscribes to an event.
    """

    def __init__(
        self, modules: Sequence[Module], remote: Mapping[str, ModuleType] | None = None
    ) -> None:
        problems: list[str] = []
        self.modules: dict[str, Module] = {}
        for module in modules:
            if module.name in self.modules:
                problems.append(f"two modules are named {module.name!r}")
            self.modules[module.name] = module
        #: The contracts of every module of the system, hosted here or not.
        self.contracts: dict[str, ModuleType] = {
            module.name: module.contracts for module in modules
        }
        for name, contracts in (remote or {}).items():
            if name in self.contracts:
                problems.append(f"module {name!r} is both hosted here and remote")
            self.contracts[name] = contracts

        self.owners: dict[type[Message], str] = {}
        self.types: dict[str, type[Message]] = {}
        for name, contracts in self.contracts.items():
            for cls in declared_messages(contracts):
                tag = message_name(cls)
                if tag in self.types and self.types[tag] is not cls:
                    problems.append(
                        f"message name {tag!r} is used by both "
                        f"{self.types[tag].__module__}.{self.types[tag].__qualname__} and "
                        f"{cls.__module__}.{cls.__qualname__}"
                    )
                self.types[tag] = cls
                self.owners[cls] = name

        #: Module names subscribed to each event, as every module's contracts declare.
        self.subscribers: dict[type[Message], list[str]] = {}
        for name, contracts in self.contracts.items():
            for event in subscribed_events(contracts):
                if event not in self.owners or not issubclass(event, Event):
                    problems.append(
                        f"the contracts of {name!r} list {_label(event)} in {SUBSCRIBES_TO}, "
                        "which is no event of any module's contracts"
                    )
                    continue
                self.subscribers.setdefault(event, []).append(name)

        #: The handler of each command and query of the modules hosted here.
        self.handlers: dict[type[Message], Endpoint] = {}
        #: The handlers of each (hosted module, subscribed event).
        self.subscriptions: dict[tuple[str, type[Message]], list[Endpoint]] = {}
        #: Every handler hosted here, by its name (the inbox and dead letters use it).
        self.endpoints: dict[str, Endpoint] = {}
        for module in modules:
            self._add_handlers(module, problems)
            self._add_subscriptions(module, problems)
        for cls, owner in self.owners.items():
            hosted_request = owner in self.modules and issubclass(cls, Command | Query)
            if hosted_request and cls not in self.handlers:
                problems.append(f"{_label(cls)} (declared by {owner!r}) has no handler")

        problems.extend(boundary_violations(modules, self.contracts))
        if problems:
            raise ConfigurationError(
                "the modules do not fit together:\n  - " + "\n  - ".join(problems)
            )

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

    def hosts(self, module: str) -> bool:
        """Whether ``module`` runs in this process."""
        return module in self.modules

    def message_types(self) -> Iterable[type[Message]]:
        """Every declared message class."""
        return self.types.values()


def _label(cls: type[Any]) -> str:
    tag = getattr(getattr(cls, "__struct_config__", None), "tag", None)
    return f"{cls.__qualname__} ({tag})" if isinstance(tag, str) else cls.__qualname__


def boundary_violations(
    modules: Sequence[Module], contracts: Mapping[str, ModuleType]
) -> list[str]:
    """Imports of another module's internals, found by reading each hosted module's source."""
    packages = {contract.__name__.rpartition(".")[0]: name for name, contract in contracts.items()}
    problems: list[str] = []
    for module in modules:
        root = Path(module.contracts.__file__ or "").parent
        for path in sorted(root.rglob("*.py")):
            source_module = _dotted(module.package, root, path)
            for imported in _imports(path, source_module):
                for package, other in packages.items():
                    if other == module.name:
                        continue
                    if imported == package or imported.startswith(package + "."):
                        allowed = package + ".contracts"
                        if imported != allowed and not imported.startswith(allowed + "."):
                            problems.append(
                                f"{source_module} imports {imported}: module {module.name!r} may "
                                f"use only {allowed} of module {other!r}"
                            )
    return problems


def _dotted(package: str, root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def _imports(path: Path, source_module: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = source_module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # `from pkg import name` may import a submodule: report both forms.
            found.extend(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found
