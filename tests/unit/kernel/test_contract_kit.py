"""The contract-test kit: its values honour msgspec's constraints, and it fails when it should.

Every generated value is decoded strictly by msgspec (which checks each ``msgspec.Meta``), so a
strategy that strays outside a constraint fails here. The kit itself is then shown failing for
a message msgspec cannot carry unchanged and for a module whose command has no handler.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import subprocess
import sys
import types
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import Phase, given, settings
from hypothesis import find as _find
from hypothesis import strategies as st

from kernel import (
    Command,
    Conflict,
    Event,
    Forbidden,
    InternalError,
    Module,
    NotFound,
    Query,
    Rejected,
    Unauthenticated,
    Unavailable,
)
from kernel.errors import CleaveError, ConcurrencyConflict
from kernel.testing import (
    UnsupportedType,
    check_error_round_trip,
    check_handlers,
    check_result_round_trip,
    check_round_trip,
    check_shop,
    contract_tests,
    strategy_for,
)


def find(strategy: Any, condition: Any) -> Any:
    """The first generated value that meets ``condition`` (hypothesis' ``find``), without
    shrinking it: the tests read only a property of it, and shrinking nested structs cost
    up to 30 s a call."""
    return _find(
        strategy,
        condition,
        settings=settings(phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None),
    )


Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}-\d{2}$")]
Word = Annotated[str, msgspec.Meta(pattern=r"^[a-z]+$", min_length=3, max_length=4)]
Short = Annotated[str, msgspec.Meta(min_length=2, max_length=5)]


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Constrained(msgspec.Struct, frozen=True, kw_only=True):
    """One field per constraint the kit must honour."""

    code: Code
    word: Word
    short: Short
    small: Annotated[int, msgspec.Meta(ge=-5, le=5)]
    threes: Annotated[int, msgspec.Meta(gt=0, lt=100, multiple_of=3)]
    ratio: Annotated[float, msgspec.Meta(gt=0, le=1)]
    tenths: Annotated[float, msgspec.Meta(ge=0, le=1e6, multiple_of=0.1)]
    blob: Annotated[bytes, msgspec.Meta(max_length=4)]
    pair: tuple[int, Short]
    some: Annotated[tuple[Word, ...], msgspec.Meta(min_length=1, max_length=2)]
    unique: Annotated[frozenset[Code], msgspec.Meta(max_length=2)]
    counts: Annotated[dict[Short, int], msgspec.Meta(min_length=1, max_length=2)]
    mode: Literal["a", "b", 3]
    colour: Colour
    when: dt.datetime
    aware: Annotated[dt.datetime, msgspec.Meta(tz=True)]
    day: dt.date
    at: dt.time
    span: dt.timedelta
    key: uuid.UUID
    amount: Decimal
    anything: Any


class Inner(msgspec.Struct, frozen=True, kw_only=True):
    sku: Code
    quantity: Annotated[int, msgspec.Meta(ge=1, le=9)]


class Outer(msgspec.Struct, frozen=True, kw_only=True):
    inner: Inner
    lines: Annotated[list[Inner], msgspec.Meta(min_length=2, max_length=4)]
    maybe: Inner | None = None
    note: Word | None = None


class Defaulted(msgspec.Struct, frozen=True, kw_only=True):
    """``left_out`` is 0 only when the kit leaves the field out (generated values are >= 1)."""

    left_out: Annotated[int, msgspec.Meta(ge=1)] = 0


class Cat(msgspec.Struct, frozen=True, kw_only=True, tag="cat"):
    name: Short


class Dog(msgspec.Struct, frozen=True, kw_only=True, tag="dog"):
    name: Short
    good: bool = True


class Node(msgspec.Struct, frozen=True, kw_only=True):
    children: list[Node]


class WithRaw(msgspec.Struct, frozen=True, kw_only=True):
    payload: msgspec.Raw


class Opaque:
    """A class msgspec can only carry with encoder and decoder hooks."""


class WithOpaque(msgspec.Struct, frozen=True, kw_only=True):
    thing: Opaque


# Messages of small fake modules. ``Measure`` cannot round-trip: msgspec writes its NaN default
# as JSON null (and NaN != NaN anyway). ``Tagged`` declares a list but defaults to a tuple, so
# what comes back is a list: not what was sent.


class Measure(Command[None], frozen=True, kw_only=True, tag="fake.Measure"):
    reading: float = float("nan")


class Tagged(Event, frozen=True, kw_only=True, tag="fake.Tagged"):
    tags: list[str] = ()  # type: ignore[assignment]


class Count(Command[int], frozen=True, kw_only=True, tag="fake.Count"):
    up_to: Annotated[int, msgspec.Meta(ge=0)]


class ListInners(Query[list[Inner]], frozen=True, kw_only=True, tag="fake.ListInners"):
    limit: Annotated[int, msgspec.Meta(ge=1, le=10)] = 10


class Stamp(Command[None], frozen=True, kw_only=True, tag="fake.Stamp"):
    mark: Short


class Untyped(Command, frozen=True, kw_only=True, tag="fake.Untyped"):  # type: ignore[type-arg]
    """Names no result: ``result_type`` says None, as for ``Stamp``, but nothing declared it."""

    mark: Short


async def stamp(command: Stamp) -> None:
    return None


async def untyped(command: Untyped) -> None:
    return None


async def count(command: Count) -> int:
    return command.up_to


async def list_inners(query: ListInners) -> list[Inner]:
    return []


async def measure(command: Measure) -> None:
    return None


def fake_module(
    name: str, *classes: type, handlers: dict[Any, Any] | None = None, home: Path
) -> Module:
    """A module whose contracts hold just ``classes`` (defined in this file).

    ``home`` (an empty directory) is where the registry looks for the module's source files.
    """
    contracts = types.ModuleType(__name__)
    contracts.__file__ = str(home / "contracts.py")
    for cls in classes:
        setattr(contracts, cls.__name__, cls)
    return Module(name=name, contracts=contracts, handlers=handlers or {})


def decodes_strictly(value: Any, tp: Any) -> None:
    """msgspec accepts ``value`` as ``tp`` from both formats (this checks every Meta)."""
    assert msgspec.json.decode(msgspec.json.encode(value), type=tp, strict=True) == value
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(value), type=tp, strict=True) == value


class TestStrategiesHonourContracts:
    @settings(max_examples=30, deadline=None)
    @given(strategy_for(Constrained))
    def test_every_constraint_holds(self, value: Constrained) -> None:
        decodes_strictly(value, Constrained)
        # The same facts, said explicitly.
        assert re.search(r"^[A-Z]{3}-\d{2}$", value.code)
        assert re.search(r"^[a-z]+$", value.word) and 3 <= len(value.word) <= 4
        assert 2 <= len(value.short) <= 5
        assert -5 <= value.small <= 5
        assert 0 < value.threes < 100 and value.threes % 3 == 0
        assert 0 < value.ratio <= 1
        assert len(value.blob) <= 4
        assert 1 <= len(value.some) <= 2 and isinstance(value.some, tuple)
        assert len(value.unique) <= 2 and 1 <= len(value.counts) <= 2
        assert value.aware.tzinfo is not None

    @settings(max_examples=40, deadline=None)
    @given(strategy_for(Outer))
    def test_nested_structs_and_bounded_lists(self, value: Outer) -> None:
        decodes_strictly(value, Outer)
        assert 2 <= len(value.lines) <= 4

    def test_lists_reach_both_bounds(self) -> None:
        lines = strategy_for(Outer).map(lambda outer: len(outer.lines))
        assert find(lines, lambda size: size == 2) == 2
        assert find(lines, lambda size: size == 4) == 4

    def test_optional_gives_none_and_values(self) -> None:
        maybe = strategy_for(Outer).map(lambda outer: outer.maybe)
        assert find(maybe, lambda inner: inner is None) is None
        assert isinstance(find(maybe, lambda inner: inner is not None), Inner)

    def test_fields_with_defaults_are_sometimes_left_out(self) -> None:
        left_out = strategy_for(Defaulted).map(lambda value: value.left_out)
        assert find(left_out, lambda number: number == 0) == 0
        assert find(left_out, lambda number: number != 0) >= 1

    def test_every_literal_value_appears(self) -> None:
        modes = strategy_for(Literal["a", "b", 3])
        for mode in ("a", "b", 3):
            assert find(modes, lambda value, mode=mode: value == mode) == mode

    @settings(max_examples=30, deadline=None)
    @given(strategy_for(Cat | Dog))
    def test_tagged_unions_keep_their_member(self, animal: Cat | Dog) -> None:
        check_round_trip(animal, Cat | Dog)
        decodes_strictly(animal, Cat | Dog)

    def test_tagged_unions_reach_every_member(self) -> None:
        animals = strategy_for(Cat | Dog)
        assert isinstance(find(animals, lambda animal: isinstance(animal, Cat)), Cat)
        assert isinstance(find(animals, lambda animal: isinstance(animal, Dog)), Dog)

    def test_strategies_are_cached_per_type(self) -> None:
        assert strategy_for(Outer) is strategy_for(Outer)

    @pytest.mark.parametrize(
        ("tp", "says"),
        [
            (WithRaw, "WithRaw.payload: msgspec.Raw"),
            (WithOpaque, "WithOpaque.thing"),
            (Node, "recursive types are not supported"),
            (dict[str, memoryview], "memoryview"),
        ],
    )
    def test_unsupported_types_are_refused_clearly(self, tp: Any, says: str) -> None:
        with pytest.raises(UnsupportedType, match=re.escape(says)):
            strategy_for(tp)


class TestContractsRoundTrips:
    @settings(max_examples=30, deadline=None)
    @given(strategy_for(Count), strategy_for(int))
    def test_a_good_command_and_its_result_round_trip(self, command: Count, result: int) -> None:
        check_round_trip(command)
        check_result_round_trip(Count, result)

    def test_a_nan_default_does_not_round_trip(self) -> None:
        with pytest.raises(AssertionError, match="json cannot decode"):
            check_round_trip(Measure())

    def test_a_tuple_default_on_a_list_field_does_not_round_trip(self) -> None:
        with pytest.raises(AssertionError, match="changes through msgspec json"):
            check_round_trip(Tagged())

    def test_the_generated_tests_fail_for_messages_that_do_not_round_trip(
        self, tmp_path: Path
    ) -> None:
        fake = fake_module("fake", Measure, Tagged, handlers={Measure: measure}, home=tmp_path)
        suite = contract_tests(fake, shop=[fake])()
        with pytest.raises(AssertionError, match="Measure"):
            suite.test_message_round_trips_Measure()  # type: ignore[attr-defined]
        with pytest.raises(AssertionError, match="Tagged"):
            suite.test_message_round_trips_Tagged()  # type: ignore[attr-defined]

    def test_the_generated_tests_pass_for_good_contracts(self, tmp_path: Path) -> None:
        fake = fake_module(
            "fake",
            Count,
            ListInners,
            Inner,
            handlers={Count: count, ListInners: list_inners},
            home=tmp_path,
        )
        suite_class = contract_tests(fake, shop=lambda: [fake], max_examples=10)
        names = sorted(name for name in vars(suite_class) if name.startswith("test_"))
        assert names == [
            "test_commands_and_queries_have_one_handler",
            "test_message_round_trips_Count",
            "test_message_round_trips_ListInners",
            "test_result_round_trips_Count",
            "test_result_round_trips_ListInners",
            "test_struct_round_trips_Inner",
        ]
        suite = suite_class()
        for name in names:
            getattr(suite, name)()

    def test_a_command_without_a_result_must_say_so(self, tmp_path: Path) -> None:
        fake = fake_module(
            "fake",
            Stamp,
            Untyped,
            handlers={Stamp: stamp, Untyped: untyped},
            home=tmp_path,
        )
        suite = contract_tests(fake, shop=[fake])()
        assert not hasattr(suite, "test_result_round_trips_Stamp")
        suite.test_declares_no_result_Stamp()  # type: ignore[attr-defined]
        with pytest.raises(AssertionError, match=r"Untyped \(fake.Untyped\) names no result"):
            suite.test_declares_no_result_Untyped()  # type: ignore[attr-defined]

    def test_the_registry_is_checked_only_for_a_module_outside_the_shop(
        self, tmp_path: Path
    ) -> None:
        inside = fake_module("inside", Count, handlers={Count: count}, home=tmp_path)
        outside = fake_module("outside", Measure, handlers={Measure: measure}, home=tmp_path)
        assert not hasattr(contract_tests(inside, shop=[inside]), "test_shop_registry_builds")
        assert not hasattr(contract_tests("inside", shop=[inside]), "test_shop_registry_builds")
        contract_tests(outside, shop=[inside])().test_shop_registry_builds()  # type: ignore[attr-defined]
        intruder = fake_module("intruder", handlers={Count: count}, home=tmp_path)
        with pytest.raises(AssertionError, match="belongs to 'inside'"):
            contract_tests(intruder, shop=[inside])().test_shop_registry_builds()  # type: ignore[attr-defined]

    @pytest.mark.parametrize(
        "kind",
        [NotFound, Conflict, Rejected, Forbidden, Unauthenticated, Unavailable, InternalError],
    )
    @settings(max_examples=15, deadline=None)
    @given(
        detail=st.text(max_size=20),
        code=st.none() | st.text(max_size=10),
        field=st.none() | st.text(max_size=10),
    )
    def test_typed_errors_come_back_as_the_same_type(
        self, kind: type[CleaveError], detail: str, code: str | None, field: str | None
    ) -> None:
        check_error_round_trip(kind(detail, code=code, field=field))

    def test_an_error_that_comes_back_as_another_type_fails(self) -> None:
        # A ConcurrencyConflict travels as Unavailable (the caller retries either the same way).
        with pytest.raises(AssertionError, match="ConcurrencyConflict changes"):
            check_error_round_trip(ConcurrencyConflict("stale"))


class TestContractsHandlers:
    def test_a_command_without_a_handler_fails(self, tmp_path: Path) -> None:
        fake = fake_module("fake", Count, Measure, handlers={Count: count}, home=tmp_path)
        with pytest.raises(AssertionError, match=r"Measure \(fake.Measure\) has no handler"):
            check_handlers(fake, [fake])
        with pytest.raises(AssertionError, match="has no handler"):
            check_shop([fake])
        suite = contract_tests(fake, shop=[fake])()
        with pytest.raises(AssertionError, match="has no handler"):
            suite.test_commands_and_queries_have_one_handler()  # type: ignore[attr-defined]

    def test_a_handler_in_another_module_fails(self, tmp_path: Path) -> None:
        owner = fake_module("owner", Count, handlers={Count: count}, home=tmp_path)
        intruder = fake_module("intruder", handlers={Count: count}, home=tmp_path)
        with pytest.raises(AssertionError, match="2 handlers"):
            check_handlers(owner, [owner, intruder])
        with pytest.raises(AssertionError, match="belongs to 'owner'"):
            check_shop([owner, intruder])

    def test_a_complete_module_passes(self, tmp_path: Path) -> None:
        fake = fake_module("fake", Count, Tagged, handlers={Count: count}, home=tmp_path)
        check_handlers(fake, [fake])
        check_shop([fake])

    def test_a_module_may_be_named_in_its_shop(self, tmp_path: Path) -> None:
        fake = fake_module("fake", Count, handlers={Count: count}, home=tmp_path)
        suite_class = contract_tests("fake", shop=[fake])
        assert suite_class.contract_module is fake  # type: ignore[attr-defined]
        with pytest.raises(LookupError, match="no module named 'other'"):
            contract_tests("other", shop=[fake])


def test_the_kit_says_which_extra_it_needs_without_hypothesis() -> None:
    # A fresh interpreter where hypothesis cannot be imported, as after `pip install cleave`.
    probe = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n    import kernel.testing\n"
        "except ImportError as error:\n    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "install cleave[testing]" in result.stdout
