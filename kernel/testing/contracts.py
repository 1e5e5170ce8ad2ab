"""Contract tests for a module: its messages survive every wire, its requests have one handler.

A module's contract test file is three lines (``tests/contracts/<module>/test_contracts.py``)::

    from entrypoints.bootstrap import shop_modules
    from kernel.testing import contract_tests

    TestBillingContracts = contract_tests("billing", shop=shop_modules)

``contract_tests`` returns a pytest test class with one test per property, named after what it
checks, so a failure says which contract broke:

- ``test_message_round_trips_<Message>``, for every command, query and event of the module
  (``declared_messages``): generated values, and a generated envelope, come back equal
  from msgspec JSON and MessagePack (decoded with ``type=Message``) and from the kernel's wire
  ``Codec`` in both formats.
- ``test_result_round_trips_<Message>``, for every ``Command[R]`` and ``Query[R]`` whose ``R``
  is not ``None``: a generated ``R`` comes back equal from msgspec and from the codec's
  replies, in both formats.
- ``test_declares_no_result_<Message>`` instead, for a ``Command[None]`` (or ``Query[None]``):
  the class says ``[None]`` itself (a bare ``Command`` would leave its result untyped, decoded
  as anything), and its empty reply comes back as ``None``.
- ``test_struct_round_trips_<Struct>``, for every other msgspec Struct of the contracts (DTOs).
- ``test_commands_and_queries_have_one_handler``: across the whole shop, each command and query
  of the module has exactly one handler, in the module itself.
- ``test_shop_registry_builds``, only for a module that is not part of ``shop``:
  ``kernel.registry.Registry`` accepts the shop with the module added. For the modules of the
  shop it would be one check repeated per module: the shop's own tests call ``check_shop`` once.

Values come from ``strategy_for`` (``kernel.testing.strategies``), so they honour the contracts'
``msgspec.Meta``. ``shop`` is the list of every module, or a function returning it (kernel code
cannot import the composition root; the test file passes it in). ``module`` may also be a
``Module`` object, for a module that is not (yet) part of the shop.

The checks are plain functions too, for a test that needs one of them directly; each raises
``AssertionError`` saying what changed: ``check_round_trip``, ``check_codec_round_trip``,
``check_result_round_trip``, ``check_no_result``, ``check_error_round_trip``,
``check_handlers``, ``check_shop``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.codec import Codec, Format
from kernel.errors import CleaveError, ConfigurationError
from kernel.messages import Command, Envelope, Message, Query, message_name, result_type
from kernel.module import Module, declared_messages
from kernel.registry import Registry
from kernel.testing.strategies import strategy_for

__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "check_codec_round_trip",
    "check_error_round_trip",
    "check_handlers",
    "check_no_result",
    "check_result_round_trip",
    "check_round_trip",
    "check_shop",
    "contract_tests",
    "declared_structs",
]

#: Examples per property: with one property per message, enough to catch a contract msgspec
#: cannot carry, small enough that every module's contract tests run in seconds.
DEFAULT_MAX_EXAMPLES = 20

#: The shop: every module, or a function returning them (called only when needed).
Shop = Sequence[Module] | Callable[[], Sequence[Module]]

_FORMATS: tuple[Format, ...] = ("json", "msgpack")
_ENCODERS: dict[Format, Callable[[Any], bytes]] = {
    "json": msgspec.json.encode,
    "msgpack": msgspec.msgpack.encode,
}
_DECODERS: dict[Format, Callable[..., Any]] = {
    "json": msgspec.json.decode,
    "msgpack": msgspec.msgpack.decode,
}


# -- the checks -----------------------------------------------------------------------------


def check_round_trip(value: Any, tp: Any = None) -> None:
    """``value`` comes back equal, and of the same type, from msgspec JSON and MessagePack.

    It is decoded strictly as ``tp`` (default: its own type), so a value breaking the type's
    constraints fails too.
    """
    target = type(value) if tp is None else tp
    label = _label(target)
    for format in _FORMATS:
        try:
            data = _ENCODERS[format](value)
        except Exception as error:
            raise AssertionError(f"{label}: {format} cannot encode {value!r}: {error}") from error
        try:
            decoded = _DECODERS[format](data, type=target)
        except Exception as error:
            raise AssertionError(
                f"{label}: {format} cannot decode what it encoded from {value!r} "
                f"({data!r}): {error}"
            ) from error
        _same(label, f"msgspec {format}", value, decoded)


def check_codec_round_trip(message: Message, envelope: Envelope | None = None) -> None:
    """``message`` and its envelope come back equal from the kernel's codec, in both formats.

    ``envelope`` (default: a minimal one) gets the message's name and version.
    """
    cls = type(message)
    envelope = msgspec.structs.replace(
        envelope or Envelope(message_id="contract-test", name=""),
        name=message_name(cls),
        version=cls.version,
    )
    for format in _FORMATS:
        codec = _codec(cls, format)
        try:
            received_envelope, received = codec.decode(codec.encode(envelope, message))
        except Exception as error:
            raise AssertionError(
                f"{_label(cls)}: the {format} codec cannot carry {message!r}: {error}"
            ) from error
        _same(_label(cls), f"the {format} codec", message, received)
        _same("Envelope", f"the {format} codec", envelope, received_envelope)


def check_result_round_trip(message: type[Message], result: Any) -> None:
    """``result``, an answer to ``message``, comes back equal from msgspec and codec replies."""
    declared = result_type(message)
    check_round_trip(result, type(None) if declared is None else declared)
    label = f"result of {_label(message)}"
    for format in _FORMATS:
        codec = _codec(message, format)
        try:
            received = codec.decode_reply(codec.encode_result(result), message)
        except Exception as error:
            raise AssertionError(
                f"{label}: the {format} codec cannot carry {result!r}: {error}"
            ) from error
        _same(label, f"the {format} codec", result, received)


def check_no_result(message: type[Message]) -> None:
    """``message`` declares ``None`` as its result in so many words, and a reply of ``None``
    comes back as ``None``.

    ``result_type`` answers ``None`` both for ``Command[None]`` and for a bare ``Command`` that
    names no result; only the first is a contract (the codec decodes the other's reply as
    anything at all).
    """
    declared = _declared_result(message)
    if declared is _UNDECLARED:
        kind = "Command" if issubclass(message, Command) else "Query"
        raise AssertionError(
            f"{_label(message)} names no result type: declare {kind}[None] for no result"
        )
    if declared is not type(None):
        raise AssertionError(f"{_label(message)} declares the result {declared!r}, not None")
    check_result_round_trip(message, None)


def check_error_round_trip(error: CleaveError) -> None:
    """``error`` comes back from a codec reply as the same type, with the same fields."""
    for format in _FORMATS:
        codec = _codec(None, format)
        try:
            codec.decode_reply(codec.encode_error(error), Message)
        except CleaveError as received:
            _same(type(error).__name__, f"the {format} codec", error, received)
        else:
            raise AssertionError(f"the {format} codec lost {error!r}: the reply raised nothing")


def check_handlers(module: Module, shop: Sequence[Module]) -> None:
    """Each command and query of ``module`` has exactly one handler in the shop: its own."""
    modules = _including(module, shop)
    problems: list[str] = []
    for cls in declared_messages(module.contracts):
        if not issubclass(cls, (Command, Query)):
            continue
        handled_by = [other.name for other in modules if cls in other.handlers]
        if not handled_by:
            problems.append(f"{_label(cls)} has no handler")
        elif len(handled_by) > 1:
            problems.append(f"{_label(cls)} has {len(handled_by)} handlers, in {handled_by}")
        elif handled_by != [module.name]:
            problems.append(
                f"{_label(cls)} is handled by {handled_by[0]!r}, not by {module.name!r} "
                "which declares it"
            )
    if problems:
        raise AssertionError(f"module {module.name!r}:\n  - " + "\n  - ".join(problems))


def check_shop(shop: Sequence[Module]) -> None:
    """``Registry`` accepts the modules together (it raises listing every problem otherwise)."""
    try:
        Registry(shop)
    except ConfigurationError as error:
        raise AssertionError(str(error)) from error


def declared_structs(module: Module) -> list[type[msgspec.Struct]]:
    """The msgspec Structs of the module's contracts that are not messages (its DTOs)."""
    contracts = module.contracts
    return [
        value
        for value in vars(contracts).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and not issubclass(value, Message)
        and value.__module__ == contracts.__name__
    ]


# -- the test class -------------------------------------------------------------------------


def contract_tests(
    module: Module | str, *, shop: Shop, max_examples: int = DEFAULT_MAX_EXAMPLES
) -> type:
    """A pytest test class checking the contracts of ``module`` (see the module docstring).

    ``module`` is a module of ``shop`` by name, or a ``Module``. Assign the class to a name
    starting with ``Test`` in a test file.
    """
    if isinstance(module, str):
        module = _find(module, _modules(shop))
    checked: Module = module
    config = settings(max_examples=max_examples, deadline=None)
    namespace: dict[str, Any] = {
        "__doc__": f"The contracts of module {checked.name!r}.",
        "contract_module": checked,
    }

    def add(name: str, check: Callable[..., None], **strategies: st.SearchStrategy[Any]) -> None:
        def test(self: object, **values: Any) -> None:
            check(**values)

        test.__name__ = test.__qualname__ = name
        # Every generated test shares this source, hence one example-database key; tell them
        # apart as hypothesis's pytest plugin does for parametrized tests.
        test._hypothesis_internal_add_digest = f"{checked.name}.{name}".encode()  # type: ignore[attr-defined]
        namespace[name] = config(given(**strategies)(test)) if strategies else test

    for cls in sorted(declared_messages(checked.contracts), key=message_name):
        add(
            f"test_message_round_trips_{cls.__name__}",
            _message_check,
            message=_deferred(cls),
            envelope=_deferred(Envelope),
        )
        if not issubclass(cls, (Command, Query)):
            continue
        if result_type(cls) is None:
            # Nothing to generate: the one reply is None, and what can go wrong is the
            # declaration itself.
            add(f"test_declares_no_result_{cls.__name__}", _no_result_check(cls))
        else:
            add(
                f"test_result_round_trips_{cls.__name__}",
                _result_check(cls),
                result=_deferred(result_type(cls)),
            )
    for struct in sorted(declared_structs(checked), key=lambda struct: struct.__name__):
        add(
            f"test_struct_round_trips_{struct.__name__}",
            _struct_check(struct),
            value=_deferred(struct),
        )
    add(
        "test_commands_and_queries_have_one_handler",
        lambda: check_handlers(checked, _modules(shop)),
    )
    if all(other.name != checked.name for other in _modules(shop)):
        add("test_shop_registry_builds", lambda: check_shop(_including(checked, _modules(shop))))
    return type(f"Test{checked.name.title()}Contracts", (), namespace)


def _message_check(message: Message, envelope: Envelope) -> None:
    check_round_trip(message)
    check_codec_round_trip(message, envelope)


def _result_check(cls: type[Message]) -> Callable[..., None]:
    def check(result: Any) -> None:
        check_result_round_trip(cls, result)

    return check


def _no_result_check(cls: type[Message]) -> Callable[..., None]:
    def check() -> None:
        check_no_result(cls)

    return check


def _struct_check(struct: type[msgspec.Struct]) -> Callable[..., None]:
    def check(value: Any) -> None:
        check_round_trip(value, struct)

    return check


def _deferred(tp: Any) -> st.SearchStrategy[Any]:
    # Built when the test runs, so an unsupported type fails its own test, not the collection.
    return st.deferred(lambda: strategy_for(type(None) if tp is None else tp))


# -- helpers --------------------------------------------------------------------------------


#: What ``_declared_result`` answers for a command or query that names no ``R``.
_UNDECLARED = object()


def _declared_result(cls: type[Message]) -> Any:
    """The ``R`` that ``cls`` (or a base of it) gives ``Command[R]``/``Query[R]``, as written."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) in (Command, Query):
                (argument,) = typing.get_args(base)
                return type(None) if argument is None else argument
    return _UNDECLARED


def _modules(shop: Shop) -> list[Module]:
    return list(shop() if callable(shop) else shop)


def _including(module: Module, shop: Sequence[Module]) -> list[Module]:
    """The shop, with ``module`` added if it is not (yet) part of it."""
    modules = list(shop)
    if all(other.name != module.name for other in modules):
        modules.append(module)
    return modules


def _find(name: str, modules: Sequence[Module]) -> Module:
    for module in modules:
        if module.name == name:
            return module
    raise LookupError(f"no module named {name!r} in the shop: {[m.name for m in modules]}")


@cache
def _codec(message: type[Message] | None, format: Format) -> Codec:
    return Codec([] if message is None else [message], format)


def _same(label: str, route: str, sent: Any, received: Any) -> None:
    if type(received) is not type(sent) or received != sent:
        raise AssertionError(
            f"{label} changes through {route}:\n  sent     {sent!r}\n  received {received!r}"
        )


def _label(tp: Any) -> str:
    tag = getattr(getattr(tp, "__struct_config__", None), "tag", None)
    name = getattr(tp, "__qualname__", None) or repr(tp)
    return f"{name} ({tag})" if isinstance(tag, str) else name
