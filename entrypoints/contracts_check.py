"""Which differences between two contracts exports would break a caller, a handler or a
subscriber that still runs the other side.

Both sides are JSON Schema exports (``cleave contracts export``). Each message is compared
field by field, with every ``$ref`` resolved, in the direction its data flows: the payload
of a command or query is an *input* (callers write it, the handler reads it); an event and a
result are *outputs* (their owner writes them, other modules read them). A change that
narrows what an input accepts, or widens what an output may hold, breaks the old side; so do
a removed message, a removed field, a new required field and a field that lost its default,
whatever the direction. docs/contracts.md lists the rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["input", "output"]

#: Keywords that document a schema and change nothing a decoder accepts.
_DOCUMENTATION = frozenset({"title", "description", "examples", "$comment", "default"})
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
#: Keywords whose any change may refuse a value the other side accepted.
_EXACT = ("pattern", "format", "multipleOf", "uniqueItems")


@dataclass(frozen=True)
class Change:
    """One difference between the old contracts and the new, in one message."""

    message: str
    #: Where in the message: a field path (``lines[].sku``), ``result...``, or ``""``.
    where: str
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{self.message}: {self.where or '(message)'}: {self.what}"


class NotAnExport(ValueError):
    """The file is not a JSON Schema export of ``cleave contracts export``."""


def load_export(text: str, source: str) -> dict[str, Any]:
    """A contracts export read from ``text``; ``NotAnExport`` if it is none."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise NotAnExport(f"{source} is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("messages"), dict):
        raise NotAnExport(
            f"{source} is not a contracts export: write one with "
            "`cleave contracts export --format jsonschema`"
        )
    return document


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every difference between the ``old`` export and the ``new`` one, by message name."""
    changes: list[Change] = []
    old_messages, new_messages = old["messages"], new["messages"]
    for name in sorted(old_messages.keys() - new_messages.keys()):
        changes.append(Change(name, "", "message removed", breaking=True))
    for name in sorted(new_messages.keys() - old_messages.keys()):
        changes.append(Change(name, "", "new message", breaking=False))
    for name in sorted(old_messages.keys() & new_messages.keys()):
        changes.extend(_message(name, old, new, old_messages[name], new_messages[name]))
    return changes


def _message(
    name: str,
    old_doc: Mapping[str, Any],
    new_doc: Mapping[str, Any],
    old: Mapping[str, Any],
    new: Mapping[str, Any],
) -> Iterator[Change]:
    for key, why in (
        ("module", "its address changed"),
        ("kind", "it is handled another way"),
        ("version", "receivers refuse any other version"),
    ):
        if old.get(key) != new.get(key):
            what = f"{key} changed from {old.get(key)!r} to {new.get(key)!r}: {why}"
            yield Change(name, "", what, breaking=True)
    if old.get("kind") != new.get("kind"):
        return
    direction: Direction = "output" if old.get("kind") == "event" else "input"
    walk = _Walk(name, old_doc, new_doc)
    walk.compare(old["payload"], new["payload"], "", direction, frozenset())
    if "result" in old or "result" in new:
        walk.compare(old.get("result", {}), new.get("result", {}), "result", "output", frozenset())
    yield from walk.changes


class _Walk:
    """Compares two schemas of one message, recording each change."""

    def __init__(self, message: str, old_doc: Mapping[str, Any], new_doc: Mapping[str, Any]):
        self.message = message
        self.old_doc = old_doc
        self.new_doc = new_doc
        self.changes: list[Change] = []

    def note(self, where: str, what: str, breaking: bool) -> None:
        self.changes.append(Change(self.message, where, what, breaking))

    def compare(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        where: str,
        direction: Direction,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        old_ref, new_ref = old.get("$ref", ""), new.get("$ref", "")
        if old_ref and new_ref:
            if (old_ref, new_ref) in seen:  # a recursive type: this pair is being compared
                return
            seen = seen | {(old_ref, new_ref)}
        old, new = _resolve(self.old_doc, old), _resolve(self.new_doc, new)
        old_options, new_options = (
            _alternatives(self.old_doc, old),
            _alternatives(self.new_doc, new),
        )
        pairs, gone, added = _match(old_options, new_options)
        if len(gone) == 1 and len(added) == 1:
            # One kind of value replaced by another: neither side can read the other's.
            what = f"type changed from {_kind(gone[0])} to {_kind(added[0])}"
            self.note(where, what, breaking=True)
        else:
            for option in gone:
                # Callers may still send it; readers only ever got fewer kinds of value.
                self.note(where, f"no longer {_kind(option)}", breaking=direction == "input")
            for option in added:
                self.note(where, f"may now be {_kind(option)}", breaking=direction == "output")
        for old_option, new_option in pairs:
            self._same_kind(old_option, new_option, where, direction, seen)

    def _same_kind(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        where: str,
        direction: Direction,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        old, new = _resolve(self.old_doc, old), _resolve(self.new_doc, new)
        self._values(old, new, where, direction)
        self._bounds(old, new, where, direction)
        if "properties" in old or "properties" in new:
            self._fields(old, new, where, direction, seen)
        for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
            if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
                self.compare(old[key], new[key], where + suffix, direction, seen)
        old_tuple, new_tuple = old.get("prefixItems", []), new.get("prefixItems", [])
        if len(old_tuple) != len(new_tuple):
            what = f"a tuple of {len(old_tuple)} items is now one of {len(new_tuple)}"
            self.note(where, what, breaking=True)
        else:
            for index, (old_item, new_item) in enumerate(zip(old_tuple, new_tuple, strict=True)):
                self.compare(old_item, new_item, f"{where}[{index}]", direction, seen)

    def _values(
        self, old: Mapping[str, Any], new: Mapping[str, Any], where: str, direction: Direction
    ) -> None:
        old_values, new_values = _enum(old), _enum(new)
        if old_values is None or new_values is None:
            return
        removed = [v for v in old_values if v not in new_values]
        added = [v for v in new_values if v not in old_values]
        if removed:
            what = f"values removed: {_listing(removed)}"
            self.note(where, what, breaking=direction == "input")
        if added:
            what = f"values added: {_listing(added)}"
            self.note(where, what, breaking=direction == "output")

    def _bounds(
        self, old: Mapping[str, Any], new: Mapping[str, Any], where: str, direction: Direction
    ) -> None:
        for key in (*_LOWER_BOUNDS, *_UPPER_BOUNDS, *_EXACT):
            before, after = old.get(key), new.get(key)
            if before == after:
                continue
            if before is None or after is None:
                # A constraint added accepts less; one dropped accepts more.
                narrower, wider = before is None, after is None
            elif key in _EXACT:
                # Another pattern (or format) accepts some values the old refused, and the
                # other way round.
                narrower = wider = True
            else:
                lower = key in _LOWER_BOUNDS
                narrower = after > before if lower else after < before
                wider = not narrower
            # An input that accepts less refuses some callers; an output that may hold more
            # sends some readers what they refuse.
            breaking = (narrower and direction == "input") or (wider and direction == "output")
            what = f"{key} changed from {_shown(before)} to {_shown(after)}"
            self.note(where, what, breaking=breaking)

    def _fields(
        self,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        where: str,
        direction: Direction,
        seen: frozenset[tuple[str, str]],
    ) -> None:
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        added = [name for name in new_fields if name not in old_fields]
        for name in old_fields:
            if name in new_fields:
                continue
            renamed = [
                other
                for other in added
                if _expanded(self.new_doc, new_fields[other])
                == _expanded(self.old_doc, old_fields[name])
            ]
            hint = f" (renamed to {renamed[0]!r}?)" if len(renamed) == 1 else ""
            self.note(_join(where, name), f"field removed{hint}", breaking=True)
        for name in added:
            if name in new_required:
                self.note(_join(where, name), "new required field (no default)", breaking=True)
            else:
                self.note(_join(where, name), "new optional field", breaking=False)
        for name in old_fields:
            if name not in new_fields:
                continue
            path = _join(where, name)
            if name in new_required and name not in old_required:
                self.note(path, "now required (it had a default)", breaking=True)
            elif name in old_required and name not in new_required:
                # The handler fills in the default; a reader of an output still requires it.
                self.note(path, "now optional (has a default)", breaking=direction == "output")
            self.compare(old_fields[name], new_fields[name], path, direction, seen)


def _resolve(document: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with its ``$ref`` (and the target's, in turn) followed within ``document``."""
    hops = 0
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/") or hops > 64:
            raise NotAnExport(f"cannot resolve $ref {ref!r}")
        target: Any = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                target = target[part]
            except (KeyError, TypeError):
                raise NotAnExport(f"$ref {ref!r} points at nothing") from None
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        hops += 1
    return schema


def _alternatives(
    document: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    """The kinds of value a schema allows: the branches of a union, or the schema itself."""
    for key in ("anyOf", "oneOf"):
        if key in schema:
            found: list[Mapping[str, Any]] = []
            for option in schema[key]:
                found.extend(_alternatives(document, _resolve(document, option)))
            return found
    return [schema]


def _kind(schema: Mapping[str, Any]) -> str:
    if "enum" in schema or "const" in schema:
        return "one of " + _listing(_enum(schema) or [])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        return f"object {schema['title']}" if "title" in schema else "an object"
    if kind is None:
        return "anything"
    return {"null": "null", "array": "an array", "object": "a map"}.get(str(kind), str(kind))


def _match(
    old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]
) -> tuple[list[tuple[Mapping[str, Any], Mapping[str, Any]]], list[Any], list[Any]]:
    """Old and new alternatives paired by kind: same kind and name first, then same kind."""
    pairs: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
    gone, added = list(old), list(new)
    for key in (_kind_key, _base_key):
        for option in list(gone):
            match = next((other for other in added if key(other) == key(option)), None)
            if match is not None:
                pairs.append((option, match))
                gone.remove(option)
                added.remove(match)
    return pairs, gone, added


def _base_key(schema: Mapping[str, Any]) -> str:
    if "enum" in schema or "const" in schema:
        return "enum"
    return str(schema.get("type"))


def _kind_key(schema: Mapping[str, Any]) -> str:
    # A union of tagged Structs tells its branches apart by their title (the class name).
    return f"{_base_key(schema)}:{schema.get('title', '')}"


def _enum(schema: Mapping[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return None


def _expanded(document: Mapping[str, Any], schema: Any, depth: int = 0) -> Any:
    """``schema`` with refs inlined and documentation dropped, to compare two fields."""
    if depth > 32:
        return None
    if isinstance(schema, Mapping):
        schema = _resolve(document, schema)
        return {
            key: _expanded(document, value, depth + 1)
            for key, value in schema.items()
            if key not in _DOCUMENTATION
        }
    if isinstance(schema, list):
        return [_expanded(document, value, depth + 1) for value in schema]
    return schema


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _listing(values: list[Any]) -> str:
    return ", ".join(json.dumps(value) for value in values)


def _shown(value: Any) -> str:
    return "none" if value is None else json.dumps(value)
