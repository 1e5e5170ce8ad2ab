"""The contract gate: the committed export is current, it describes what the wire carries, and
``cleave contracts check`` fails on each kind of breaking change and passes compatible ones."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoints.cli import main
from entrypoints.contracts_check import Change, compare
from entrypoints.contracts_export import asyncapi, contracts_registry, json_schema, render
from entrypoints.contracts_gate import COMMITTED_ASYNCAPI, COMMITTED_EXPORT
from kernel import Command, Event, Query
from kernel.messages import result_type
from kernel.testing import strategy_for

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = contracts_registry()


def test_the_committed_export_is_current() -> None:
    """CI checks the code against contracts/; after changing a contract, run `just contracts`
    and commit what it writes (the diff is the contract change to review)."""
    for path, document in (
        (COMMITTED_EXPORT, json_schema(REGISTRY)),
        (COMMITTED_ASYNCAPI, asyncapi(REGISTRY)),
    ):
        committed = (ROOT / path).read_text(encoding="utf-8")
        assert committed == render(document), f"{path} is stale: run `just contracts`"


def test_check_passes_against_the_committed_export(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contracts", "check", str(ROOT / COMMITTED_EXPORT)]) == 0
    assert "contracts are compatible with" in capsys.readouterr().out


def test_export_writes_both_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "asyncapi.json"
    assert main(["contracts", "export", "--format", "asyncapi", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["asyncapi"] == "3.0.0"
    capsys.readouterr()
    assert main(["contracts", "export"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema(REGISTRY)


def test_check_prints_each_breaking_change_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export from before a message was removed and a field's type changed."""
    old = json_schema(REGISTRY)
    old["messages"]["catalog.DeleteProduct"] = copy.deepcopy(old["messages"]["catalog.GetProduct"])
    old["$defs"]["Product"]["properties"]["price_cents"] = {"type": "string"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old), encoding="utf-8")

    assert main(["contracts", "check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "breaking: catalog.DeleteProduct: (message): message removed" in lines
    assert (
        "breaking: catalog.GetProduct: result.price_cents: type changed from string to integer"
        in lines
    )
    breaking = [line for line in lines if line.startswith("breaking: ")]
    assert lines[-1].startswith(f"{len(breaking)} breaking change(s) against {path}")


@pytest.mark.parametrize("content", ["not json", '{"openapi": "3.1.0"}'])
def test_check_refuses_what_is_not_an_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "old.json"
    path.write_text(content, encoding="utf-8")
    assert main(["contracts", "check", str(path)]) == 1
    assert "cleave: " in capsys.readouterr().err
    assert main(["contracts", "check", str(tmp_path / "missing.json")]) == 1


# -- what the export says is what the wire carries ------------------------------------------

MESSAGES = sorted(REGISTRY.types)


def _validator(schema: dict[str, Any], export: dict[str, Any]) -> jsonschema.Validator:
    return jsonschema.Draft202012Validator({**schema, "$defs": export["$defs"]})


def test_the_export_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema(REGISTRY))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(MESSAGES))
def test_every_encoded_message_and_result_matches_its_schema(
    data: st.DataObject, name: str
) -> None:
    export = json_schema(REGISTRY)
    entry = export["messages"][name]
    cls = REGISTRY.types[name]
    message = data.draw(strategy_for(cls))
    _validator(entry["payload"], export).validate(json.loads(msgspec.json.encode(message)))
    if "result" in entry:
        result = data.draw(strategy_for(result_type(cls)))
        _validator(entry["result"], export).validate(json.loads(msgspec.json.encode(result)))


def test_the_schema_refuses_what_the_codec_refuses() -> None:
    export = json_schema(REGISTRY)
    validator = _validator(export["messages"]["ordering.PlaceOrder"]["payload"], export)
    no_lines = {"type": "ordering.PlaceOrder", "payment_token": "tok_ok", "lines": []}
    assert not validator.is_valid(no_lines)  # an order has at least one line


# -- AsyncAPI -------------------------------------------------------------------------------


def _pointer(document: Any, ref: str) -> Any:
    assert ref.startswith("#/"), ref
    for part in ref[2:].split("/"):
        document = document[part.replace("~1", "/").replace("~0", "~")]
    return document


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _refs(item)] + (
            [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        )
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []


def test_the_asyncapi_document_has_the_shape_of_asyncapi_3() -> None:
    """No well-kept Python validator of AsyncAPI 3 exists (the candidates on PyPI are object
    models or code generators): check the parts of the specification a tool relies on."""
    document = asyncapi(REGISTRY)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] and document["info"]["version"]
    for ref in _refs(document):
        _pointer(document, ref)  # every $ref resolves
    key = re.compile(r"^[a-zA-Z0-9.\-_]+$")  # the specification's pattern for component keys
    for section in ("schemas", "messages"):
        assert all(key.match(name) for name in document["components"][section])
    for message in document["components"]["messages"].values():
        # AsyncAPI's default schema format is a superset of JSON Schema draft 07.
        jsonschema.Draft7Validator.check_schema(message["payload"])
    for name, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel = operation["channel"]["$ref"]
        # An operation's messages must be messages of its channel (and so for its reply).
        assert all(m["$ref"].startswith(channel + "/messages/") for m in operation["messages"])
        if "reply" in operation:
            reply = operation["reply"]["channel"]["$ref"]
            assert all(
                m["$ref"].startswith(reply + "/messages/") for m in operation["reply"]["messages"]
            )


def test_every_module_channel_carries_what_reaches_the_module() -> None:
    document = asyncapi(REGISTRY)
    channels = document["channels"]
    for name, cls in REGISTRY.types.items():
        owner = REGISTRY.owner(cls)
        if issubclass(cls, Command | Query):
            assert name in channels[owner]["messages"]
            assert f"{name}.result" in channels[f"{owner}.replies"]["messages"]
        for subscriber in REGISTRY.subscribers.get(cls, []):
            assert name in channels[subscriber]["messages"]
            assert f"{owner}.publish.{subscriber}" in document["operations"]
    assert channels["ordering"]["address"] == "ordering"


# -- the compatibility rules, on changed Struct classes --------------------------------------

Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Item(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    status: Literal["ACTIVE", "RETIRED"]
    price_cents: int


class AddItem(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    sku: Sku
    kind: Literal["plain", "gift"] = "plain"
    note: str = ""


class GetItem(Query[Item], frozen=True, kw_only=True, tag="shop.GetItem"):
    sku: Sku


class ItemAdded(Event, frozen=True, kw_only=True, tag="shop.ItemAdded"):
    sku: Sku
    price_cents: int


def _contracts(*classes: type[Any]) -> ModuleType:
    # Contracts are the messages their module defines: a module named like this one, holding
    # only the classes of one version of the contracts.
    module = ModuleType(__name__)
    for cls in classes:
        setattr(module, cls.__name__, cls)
    return module


def _answering(item: type[Any]) -> dict[str, type[Any]]:
    """AddItem and GetItem as they are, answering ``item``: a change to a result type."""

    class AddItem(Command[item], frozen=True, kw_only=True, tag="shop.AddItem"):  # type: ignore[valid-type]
        sku: Sku
        kind: Literal["plain", "gift"] = "plain"
        note: str = ""

    class GetItem(Query[item], frozen=True, kw_only=True, tag="shop.GetItem"):  # type: ignore[valid-type]
        sku: Sku

    return {"AddItem": AddItem, "GetItem": GetItem}


def _export(**replacing: type[Any]) -> dict[str, Any]:
    classes: dict[str, type[Any]] = {"AddItem": AddItem, "GetItem": GetItem, "ItemAdded": ItemAdded}
    if "Item" in replacing:
        classes.update(_answering(replacing.pop("Item")))
    classes.update(replacing)
    return json_schema(contracts_registry({"shop": _contracts(*classes.values())}))


def _breaking(changes: list[Change]) -> list[str]:
    return [str(change) for change in changes if change.breaking]


class ItemWithoutPrice(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    status: Literal["ACTIVE", "RETIRED"]


class ItemWithStatusSold(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    status: Literal["ACTIVE", "RETIRED", "SOLD"]
    price_cents: int


class ItemWithOptionalPrice(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    status: Literal["ACTIVE", "RETIRED"]
    price_cents: int | None = None


class AddItemRenamed(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    stock_keeping_unit: Sku
    kind: Literal["plain", "gift"] = "plain"
    note: str = ""


class AddItemWithRequiredPrice(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    sku: Sku
    kind: Literal["plain", "gift"] = "plain"
    note: str = ""
    price_cents: int


class AddItemWithRequiredNote(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    sku: Sku
    kind: Literal["plain", "gift"] = "plain"
    note: str


class AddItemPlainOnly(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    sku: Sku
    kind: Literal["plain"] = "plain"
    note: str = ""


class AddItemShortSku(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=16)]
    kind: Literal["plain", "gift"] = "plain"
    note: str = ""


class AddItemV2(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    version = 2

    sku: Sku
    kind: Literal["plain", "gift"] = "plain"
    note: str = ""


class ItemAddedWithTextPrice(Event, frozen=True, kw_only=True, tag="shop.ItemAdded"):
    sku: Sku
    price_cents: str


class ItemAddedMaybePriced(Event, frozen=True, kw_only=True, tag="shop.ItemAdded"):
    sku: Sku
    price_cents: int | None


class ItemAddedWithLongerSku(Event, frozen=True, kw_only=True, tag="shop.ItemAdded"):
    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    price_cents: int


class GetItemAnswersAList(Query[list[Item]], frozen=True, kw_only=True, tag="shop.GetItem"):
    sku: Sku


class GetItemAsEvent(Event, frozen=True, kw_only=True, tag="shop.GetItem"):
    sku: Sku


class Unrelated(msgspec.Struct, frozen=True, kw_only=True):
    pass


BREAKING: dict[str, tuple[dict[str, type[Any]], str]] = {
    "message removed": ({"GetItem": Unrelated}, "shop.GetItem: (message): message removed"),
    "field removed": (
        {"Item": ItemWithoutPrice},
        "shop.GetItem: result.price_cents: field removed",
    ),
    "field renamed": (
        {"AddItem": AddItemRenamed},
        "shop.AddItem: sku: field removed (renamed to 'stock_keeping_unit'?)",
    ),
    "type changed": (
        {"ItemAdded": ItemAddedWithTextPrice},
        "shop.ItemAdded: price_cents: type changed from integer to string",
    ),
    "result type changed": (
        {"GetItem": GetItemAnswersAList},
        "shop.GetItem: result: type changed from object Item to an array",
    ),
    "new required field": (
        {"AddItem": AddItemWithRequiredPrice},
        "shop.AddItem: price_cents: new required field (no default)",
    ),
    "optional field becomes required": (
        {"AddItem": AddItemWithRequiredNote},
        "shop.AddItem: note: now required (it had a default)",
    ),
    "literal value removed from an input": (
        {"AddItem": AddItemPlainOnly},
        'shop.AddItem: kind: values removed: "gift"',
    ),
    "literal value added to an output": (
        {"Item": ItemWithStatusSold},
        'shop.GetItem: result.status: values added: "SOLD"',
    ),
    "input constraint narrowed": (
        {"AddItem": AddItemShortSku},
        "shop.AddItem: sku: maxLength changed from 64 to 16",
    ),
    "output constraint widened": (
        {"ItemAdded": ItemAddedWithLongerSku},
        "shop.ItemAdded: sku: maxLength changed from 64 to 128",
    ),
    "output may now be null": (
        {"ItemAdded": ItemAddedMaybePriced},
        "shop.ItemAdded: price_cents: may now be null",
    ),
    "output field gets a default": (
        {"Item": ItemWithOptionalPrice},
        "shop.GetItem: result.price_cents: now optional (has a default)",
    ),
    "version bumped": (
        {"AddItem": AddItemV2},
        "shop.AddItem: (message): version changed from 1 to 2: receivers refuse any other version",
    ),
    "kind changed": (
        {"GetItem": GetItemAsEvent},
        "shop.GetItem: (message): kind changed from 'query' to 'event': it is handled another way",
    ),
}


@pytest.mark.parametrize("case", list(BREAKING))
def test_check_fails_on_a_breaking_change(case: str) -> None:
    replacing, expected = BREAKING[case]
    assert expected in _breaking(compare(_export(), _export(**replacing)))


def test_a_change_to_a_shared_struct_is_reported_in_every_message_that_carries_it() -> None:
    breaking = _breaking(compare(_export(), _export(Item=ItemWithoutPrice)))
    assert breaking == [
        "shop.AddItem: result.price_cents: field removed",
        "shop.GetItem: result.price_cents: field removed",
    ]


class AddItemWithGiftWrap(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    sku: Sku
    kind: Literal["plain", "gift", "bulk"] = "plain"
    note: str = ""
    gift_wrap: bool = False


class AddItemLongerSku(Command[Item], frozen=True, kw_only=True, tag="shop.AddItem"):
    """Add an item (a docstring changes no contract)."""

    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    kind: Literal["plain", "gift"] = "plain"
    note: str | None = ""


class ItemAddedWithName(Event, frozen=True, kw_only=True, tag="shop.ItemAdded"):
    sku: Sku
    price_cents: int
    name: str = ""


class ItemWithRetiredDropped(msgspec.Struct, frozen=True, kw_only=True):
    sku: Sku
    status: Literal["ACTIVE"]
    price_cents: int
    name: str = ""


class RemoveItem(Command[None], frozen=True, kw_only=True, tag="shop.RemoveItem"):
    sku: Sku


COMPATIBLE: dict[str, tuple[dict[str, type[Any]], list[str]]] = {
    "optional field added to a command, literal value added to it": (
        {"AddItem": AddItemWithGiftWrap},
        ['shop.AddItem: kind: values added: "bulk"', "shop.AddItem: gift_wrap: new optional field"],
    ),
    "optional field added to an event": (
        {"ItemAdded": ItemAddedWithName},
        ["shop.ItemAdded: name: new optional field"],
    ),
    "input accepts more": (
        {"AddItem": AddItemLongerSku},
        [
            "shop.AddItem: sku: maxLength changed from 64 to 128",
            "shop.AddItem: note: may now be null",
        ],
    ),
    "output holds less, and a new optional field": (
        {"Item": ItemWithRetiredDropped},
        ['shop.GetItem: result.status: values removed: "RETIRED"'],
    ),
    "message added": ({"RemoveItem": RemoveItem}, ["shop.RemoveItem: (message): new message"]),
}


@pytest.mark.parametrize("case", list(COMPATIBLE))
def test_check_passes_a_compatible_change(case: str) -> None:
    replacing, expected = COMPATIBLE[case]
    changes = compare(_export(), _export(**replacing))
    assert _breaking(changes) == []
    assert set(expected) <= {str(change) for change in changes}


def test_check_passes_against_itself() -> None:
    assert compare(_export(), _export()) == []
    export = json_schema(REGISTRY)
    assert compare(export, copy.deepcopy(export)) == []
