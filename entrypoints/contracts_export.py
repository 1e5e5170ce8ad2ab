"""The contracts of every module as documents: JSON Schema and AsyncAPI 3.0.

Both are drawn from the registry (who owns each message, what kind it is, who subscribes to
each event) and from msgspec's own JSON Schema of the Structs, so they say what the wire
codec accepts: the tag field, every constraint of ``msgspec.Meta``, the result type of each
command and query.

The JSON Schema export is the one ``cleave contracts check`` compares against (see
``docs/contracts.md``); ``contracts/contracts.json`` holds the one committed on main.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Literal

import msgspec

from kernel.messages import Command, Message, Query, message_kind, message_name, result_type
from kernel.registry import Registry

Format = Literal["jsonschema", "asyncapi"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Where the wire carries a command or query to a module (its queue is named after it).
REQUESTS_PATH = "/internal/v1/requests"
DELIVERIES_PATH = "/internal/v1/deliveries/{module}"


def contracts_registry(contracts: Mapping[str, ModuleType] | None = None) -> Registry:
    """The registry of every module's contracts (the shop's unless given), hosting none:
    contracts alone say who owns and who subscribes to what."""
    if contracts is None:
        from entrypoints.bootstrap import shop_contracts

        contracts = shop_contracts()
    return Registry([], remote=contracts)


def export(registry: Registry, format: Format = "jsonschema") -> dict[str, Any]:
    """The contracts of ``registry`` as a JSON Schema or an AsyncAPI document."""
    if format == "jsonschema":
        return json_schema(registry)
    if format == "asyncapi":
        return asyncapi(registry)
    raise ValueError(f"unknown format {format!r}: jsonschema or asyncapi")


def render(document: Mapping[str, Any]) -> str:
    """The text written to a file: stable, so that a diff shows only what changed."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def json_schema(registry: Registry) -> dict[str, Any]:
    """One JSON Schema (2020-12) that validates any message body, with a ``messages`` map:
    for each message name its module, kind, version, payload and (commands and queries)
    result."""
    messages, components = _schemas(registry, "#/$defs/{name}")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "Cleave message contracts",
        "$comment": "Written by `cleave contracts export` (just contracts); "
        "`cleave contracts check` compares the code with it. Do not edit by hand.",
        "anyOf": [entry["payload"] for entry in messages.values()],
        "messages": messages,
        "$defs": components,
    }


def asyncapi(registry: Registry) -> dict[str, Any]:
    """One AsyncAPI 3.0 document of the whole system.

    A channel per module: its queue (Redis or RabbitMQ transport) and its HTTP endpoints,
    which carry the commands and queries it handles and the events it subscribes to; and a
    channel for the replies of its commands and queries. Operations: each module receives its
    requests (with the reply) and its subscribed events; each publisher sends its events to
    each subscriber's channel.
    """
    messages, components = _schemas(registry, "#/components/schemas/{name}")
    component_messages: dict[str, Any] = {}
    for name, entry in messages.items():
        cls = registry.types[name]
        component_messages[name] = {
            "name": name,
            "title": cls.__name__,
            "summary": _summary(cls),
            "contentType": "application/json",
            "payload": entry["payload"],
            "x-cleave-module": entry["module"],
            "x-cleave-kind": entry["kind"],
            "x-cleave-version": entry["version"],
        }
        if "result" in entry:
            component_messages[_result_name(name)] = {
                "name": _result_name(name),
                "title": f"{cls.__name__} result",
                "summary": f"What the handler of {name} answers.",
                "contentType": "application/json",
                "payload": entry["result"],
            }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for module in sorted(registry.contracts):
        requests = [n for n, e in messages.items() if e["module"] == module and "result" in e]
        subscribed = sorted(
            message_name(event)
            for event, subscribers in registry.subscribers.items()
            if module in subscribers
        )
        channels[module] = {
            "address": module,
            "title": f"{module} queue",
            "description": f"What reaches module {module}: over queues, the queue {module!r}; "
            f"over HTTP, POST {REQUESTS_PATH} (commands, queries) and "
            f"POST {DELIVERIES_PATH.format(module=module)} (events).",
            "messages": {n: _ref("components/messages", n) for n in [*requests, *subscribed]},
        }
        if requests:
            replies = f"{module}.replies"
            channels[replies] = {
                "address": None,
                "title": f"{module} replies",
                "description": "The answer to a command or query, on the caller's own reply "
                "key (queues) or in the HTTP response.",
                "messages": {
                    _result_name(n): _ref("components/messages", _result_name(n)) for n in requests
                },
            }
            operations[f"{module}.handle"] = {
                "action": "receive",
                "title": f"{module} handles its commands and queries",
                "channel": _ref("channels", module),
                "messages": [_ref(f"channels/{module}/messages", n) for n in requests],
                "reply": {
                    "channel": _ref("channels", replies),
                    "messages": [
                        _ref(f"channels/{replies}/messages", _result_name(n)) for n in requests
                    ],
                },
            }
        if subscribed:
            operations[f"{module}.subscribe"] = {
                "action": "receive",
                "title": f"{module} reacts to events",
                "channel": _ref("channels", module),
                "messages": [_ref(f"channels/{module}/messages", n) for n in subscribed],
            }
    for publisher in sorted(registry.contracts):
        for subscriber in sorted(registry.contracts):
            events = sorted(
                message_name(event)
                for event, subscribers in registry.subscribers.items()
                if subscriber in subscribers and registry.owner(event) == publisher
            )
            if events:
                operations[f"{publisher}.publish.{subscriber}"] = {
                    "action": "send",
                    "title": f"{publisher} publishes events {subscriber} subscribes to",
                    "description": "Delivered at least once, by the publisher's outbox relay.",
                    "channel": _ref("channels", subscriber),
                    "messages": [_ref(f"channels/{subscriber}/messages", n) for n in events],
                }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Cleave modules",
            "version": importlib.metadata.version("cleave"),
            "description": "Every module's commands, queries and events, and where each goes. "
            "Written by `cleave contracts export --format asyncapi`.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": component_messages},
    }


def _schemas(registry: Registry, ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry of each message (sorted by name) and the schemas they refer to."""
    names = sorted(registry.types)
    types: list[Any] = []
    for name in names:
        cls = registry.types[name]
        types.append(cls)
        if issubclass(cls, Command | Query):
            types.append(result_type(cls))
    schemas, components = msgspec.json.schema_components(types, ref_template=ref_template)
    found = iter(schemas)
    messages: dict[str, Any] = {}
    for name in names:
        cls = registry.types[name]
        entry: dict[str, Any] = {
            "module": registry.owner(cls),
            "kind": message_kind(cls),
            "version": cls.version,
            "payload": next(found),
        }
        if issubclass(cls, Command | Query):
            entry["result"] = next(found)
        messages[name] = entry
    return messages, dict(sorted(components.items()))


def _result_name(name: str) -> str:
    return f"{name}.result"


def _ref(where: str, name: str) -> dict[str, str]:
    # A "/" or "~" in a key would need JSON Pointer escapes; message and module names have none.
    return {"$ref": f"#/{where}/{name}"}


def _summary(cls: type[Message]) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ") if doc else cls.__name__
