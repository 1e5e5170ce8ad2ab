"""Checks that a set of modules fits together, and answers "who handles this message?".

Built once at start-up from every module's declaration. It refuses, with one message listing
every problem, a command or query without a handler or with two, a handler for another
module's message, an event subscribed to that no module declares, a message name used twice,
and a module that imports another module's internals (anything but its ``contracts``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import ConfigurationError
from kernel.messages import Command, Event, Message, MessageKind, Query, message_kind, message_name
from kernel.module import Handler, Module, handler_name


@dataclass(frozen=True)
class Endpoint:
    """One handler of one module: the target of a delivery."""

    name: str
    module: str
    message: type[Message]
    handler: Handler
    kind: MessageKind


class Registry:
    """The validated map of messages to the handlers and modules that own them."""

    def __init__(self, modules: Sequence[Module]) -> None:
        problems: list[str] = []
        self.modules: dict[str, Module] = {}
        for module in modules:
            if module.name in self.modules:
                problems.append(f"two modules are named {module.name!r}")
            self.modules[module.name] = module

        self.owners: dict[type[Message], str] = {}
        self.types: dict[str, type[Message]] = {}
        for module in modules:
            for cls in module.declared_messages():
                name = message_name(cls)
                if name in self.types and self.types[name] is not cls:
                    problems.append(
                        f"message name {name!r} is used by both "
                        f"{self.types[name].__module__}.{self.types[name].__qualname__} and "
                        f"{cls.__module__}.{cls.__qualname__}"
                    )
                self.types[name] = cls
                self.owners[cls] = module.name

        self.routes: dict[type[Message], Endpoint] = {}
        self.subscribers: dict[type[Message], list[Endpoint]] = {}
        self.endpoints: dict[str, Endpoint] = {}
        for module in modules:
            for cls, handler in module.handlers.items():
                owner = self.owners.get(cls)
                label = _label(cls)
                if owner is None:
                    problems.append(
                        f"module {module.name!r} handles {label}, "
                        "which no module's contracts declare"
                    )
                    continue
                if owner != module.name:
                    problems.append(
                        f"module {module.name!r} handles {label}, which belongs to {owner!r}: "
                        "a module handles only its own commands and queries"
                    )
                    continue
                if issubclass(cls, Event):
                    problems.append(
                        f"module {module.name!r} lists event {label} under handlers; "
                        "events go under subscriptions"
                    )
                    continue
                endpoint = self._endpoint(module.name, cls, handler, problems)
                if cls in self.routes:
                    problems.append(
                        f"{label} has two handlers: {self.routes[cls].name} and {endpoint.name}"
                    )
                self.routes[cls] = endpoint
            for event, handlers in module.subscriptions.items():
                label = _label(event)
                if event not in self.owners:
                    problems.append(
                        f"module {module.name!r} subscribes to {label}, "
                        "which no module's contracts declare"
                    )
                    continue
                if not issubclass(event, Event):
                    problems.append(f"module {module.name!r} subscribes to {label}, not an Event")
                    continue
                for handler in handlers:
                    endpoint = self._endpoint(module.name, event, handler, problems)
                    self.subscribers.setdefault(event, []).append(endpoint)

        for cls, owner in self.owners.items():
            if issubclass(cls, (Command, Query)) and cls not in self.routes:
                problems.append(f"{_label(cls)} (declared by {owner!r}) has no handler")

        problems.extend(boundary_violations(modules))
        if problems:
            raise ConfigurationError(
                "the modules do not fit together:\n  - " + "\n  - ".join(problems)
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

    def targets(self, message: type[Message]) -> list[Endpoint]:
        """Where a message emitted through an outbox goes: its handler, or its subscribers."""
        if issubclass(message, Event):
            return self.subscribers.get(message, [])
        return [self.routes[message]]

    def owner(self, message: type[Message]) -> str:
        """The module whose contracts declare ``message``."""
        return self.owners[message]

    def message_types(self) -> Iterable[type[Message]]:
        """Every declared message class."""
        return self.types.values()


def _label(cls: type[Any]) -> str:
    tag = getattr(getattr(cls, "__struct_config__", None), "tag", None)
    return f"{cls.__qualname__} ({tag})" if isinstance(tag, str) else cls.__qualname__


def boundary_violations(modules: Sequence[Module]) -> list[str]:
    """Imports of another module's internals, found by reading each module's source."""
    packages = {module.package: module.name for module in modules}
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
