"""Hypothesis strategies for msgspec types that honour their ``msgspec.Meta`` constraints.

``strategy_for(tp)`` reads ``tp`` with ``msgspec.inspect.type_info`` and builds a strategy whose
every value is one msgspec itself would accept when decoding strictly as ``tp``::

    from kernel.testing import strategy_for

    @given(strategy_for(PlaceOrder))
    def test_place_order(command: PlaceOrder) -> None: ...

Why not ``hypothesis.strategies.from_type``: on a Struct it ignores the ``msgspec.Meta`` of the
fields (patterns, bounds, lengths) and may call default factories at definition time, so its
values are often ones the wire would refuse.

What it generates:

- Structs, dataclasses, NamedTuples and TypedDicts: required fields always; fields with a
  default are sometimes left out, so the default applies. Tags (``tag=...``) are msgspec's job.
- ``int``/``float`` within ``ge``/``gt``/``le``/``lt``/``multiple_of``; ints without bounds stay
  within what MessagePack carries (``-2**63 .. 2**64-1``); floats are finite, because msgspec
  writes NaN and infinities as JSON ``null``.
- ``str`` within ``min_length``/``max_length`` and matching ``pattern`` (drawn with
  ``st.from_regex(pattern, fullmatch=True)``, then checked again); ``bytes`` and ``bytearray``
  within their lengths; ``bool``, ``None``, ``Literal``, ``Enum``.
- ``list``, ``tuple`` (fixed and ``tuple[X, ...]``), ``set``, ``frozenset`` and ``dict`` within
  their lengths. A collection gets at most ``MAX_EXTRA_ITEMS`` items beyond its ``min_length``
  (still within ``max_length``): enough to see a round-trip fail, small enough to stay fast.
- Unions (``X | None``, tagged unions of Structs), ``datetime`` (naive and with fixed offsets in
  whole minutes, the precision of RFC 3339), ``date``, ``time``, ``timedelta``, ``UUID``,
  finite ``Decimal``, and ``Any`` (JSON-like values that decode back to themselves).

What it refuses, with ``UnsupportedType`` naming the offending field: ``msgspec.Raw`` (it holds
bytes already encoded for one format, so no value suits both JSON and MessagePack),
``msgspec.msgpack.Ext`` (JSON cannot carry it), ``memoryview``, custom types that need
encoder/decoder hooks, and recursive types (a Struct that contains itself, directly or not).

Strategies are cached per type: asking twice for the same type returns the same strategy.
"""

from __future__ import annotations

import builtins
import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypedDict, TypeVar

import msgspec
import msgspec.inspect as mi
from hypothesis import reject
from hypothesis import strategies as st

__all__ = ["MAX_EXTRA_ITEMS", "UnsupportedType", "strategy_for"]

#: Items a generated collection may have beyond its ``min_length``.
MAX_EXTRA_ITEMS = 3
#: The integers both JSON and MessagePack carry (msgspec refuses larger ones in MessagePack).
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
#: Datetimes stay within these years, so that any offset still converts to UTC and back.
_EARLIEST, _LATEST = dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)
#: Fixed UTC offsets in whole minutes, the precision RFC 3339 (msgspec's JSON form) keeps.
_OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
#: Values of an ``Any`` field that decode back to themselves from JSON and MessagePack.
_ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)

_CACHE: dict[Any, st.SearchStrategy[Any]] = {}

T = TypeVar("T")


class UnsupportedType(TypeError):
    """``strategy_for`` cannot generate values of this type (the message says where and why)."""


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy for values of the msgspec-compatible type ``tp`` that satisfy its constraints.

    Raises ``UnsupportedType`` for a type it cannot generate (see the module docstring).
    """
    try:
        return _CACHE[tp]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: build it, just do not cache it
        return _build(tp)
    strategy = _CACHE[tp] = _build(tp)
    return strategy


def _build(tp: Any) -> st.SearchStrategy[Any]:
    try:
        info = mi.type_info(tp)
    except (TypeError, ValueError) as error:
        raise UnsupportedType(f"msgspec does not support {tp!r}: {error}") from error
    return _Builder(tp).strategy(info, _label(tp), frozenset())


def _label(tp: Any) -> str:
    return getattr(tp, "__qualname__", None) or repr(tp)


class _Builder:
    """Walks the ``type_info`` of one type; ``path`` says where a problem is."""

    def __init__(self, root: Any) -> None:
        self.root = root

    def refuse(self, path: str, why: str) -> UnsupportedType:
        return UnsupportedType(f"strategy_for({_label(self.root)}) cannot generate {path}: {why}")

    def strategy(self, info: mi.Type, path: str, active: frozenset[Any]) -> st.SearchStrategy[Any]:
        match info:
            case mi.Metadata():
                return self.strategy(info.type, path, active)
            case mi.AnyType():
                return _ANY
            case mi.NoneType():
                return st.none()
            case mi.BoolType():
                return st.booleans()
            case mi.IntType():
                return self.ints(info, path)
            case mi.FloatType():
                return self.floats(info, path)
            case mi.StrType():
                return self.strings(info)
            case mi.BytesType():
                return st.binary(min_size=info.min_length or 0, max_size=info.max_length)
            case mi.ByteArrayType():
                return st.binary(min_size=info.min_length or 0, max_size=info.max_length).map(
                    bytearray
                )
            case mi.LiteralType():
                return st.sampled_from(info.values)
            case mi.EnumType():
                return st.sampled_from(list(info.cls))
            case mi.DateTimeType():
                naive = st.datetimes(min_value=_EARLIEST, max_value=_LATEST)
                aware = st.datetimes(min_value=_EARLIEST, max_value=_LATEST, timezones=_OFFSETS)
                return {None: naive | aware, True: aware, False: naive}[info.tz]
            case mi.TimeType():
                naive_time = st.times()
                aware_time = st.times(timezones=_OFFSETS)
                return {None: naive_time | aware_time, True: aware_time, False: naive_time}[info.tz]
            case mi.DateType():
                return st.dates()
            case mi.TimeDeltaType():
                return st.timedeltas(
                    min_value=dt.timedelta(days=-(10**6)), max_value=dt.timedelta(days=10**6)
                )
            case mi.UUIDType():
                return st.uuids()
            case mi.DecimalType():
                return st.decimals(allow_nan=False, allow_infinity=False)
            case mi.UnionType():
                return st.one_of([self.strategy(member, path, active) for member in info.types])
            case mi.ListType():
                return st.lists(self.strategy(info.item_type, path + "[]", active), **_sizes(info))
            case mi.VarTupleType():
                items = self.strategy(info.item_type, path + "[]", active)
                return st.lists(items, **_sizes(info)).map(tuple)
            case mi.TupleType():
                return st.tuples(
                    *(
                        self.strategy(item, f"{path}[{index}]", active)
                        for index, item in enumerate(info.item_types)
                    )
                )
            case mi.SetType():
                return st.sets(self.strategy(info.item_type, path + "[]", active), **_sizes(info))
            case mi.FrozenSetType():
                items = self.strategy(info.item_type, path + "[]", active)
                return st.frozensets(items, **_sizes(info))
            case mi.DictType():
                return st.dictionaries(
                    self.strategy(info.key_type, path + ".<key>", active),
                    self.strategy(info.value_type, path + "[]", active),
                    **_sizes(info),
                )
            case mi.FrozenDictType():
                frozendict = getattr(builtins, "frozendict", None)
                if frozendict is None:
                    raise self.refuse(path, "frozendict needs Python 3.15")
                return st.dictionaries(
                    self.strategy(info.key_type, path + ".<key>", active),
                    self.strategy(info.value_type, path + "[]", active),
                    **_sizes(info),
                ).map(frozendict)
            case mi.StructType() | mi.DataclassType() | mi.NamedTupleType():
                return self.record(info.cls, info.fields, path, active, build=info.cls)
            case mi.TypedDictType():
                return self.record(info.cls, info.fields, path, active, build=dict)
            case mi.RawType():
                raise self.refuse(
                    path,
                    "msgspec.Raw holds bytes already encoded for one format, so no value "
                    "suits both JSON and MessagePack; give the field a concrete type",
                )
            case mi.ExtType():
                raise self.refuse(path, "msgspec.msgpack.Ext cannot travel as JSON")
            case mi.MemoryViewType():
                raise self.refuse(path, "a decoded memoryview borrows the input; use bytes")
            case mi.CustomType():
                raise self.refuse(
                    path, f"{info.cls!r} needs encoder and decoder hooks; use a msgspec type"
                )
        raise self.refuse(path, f"no strategy for {info!r}")

    def record(
        self,
        cls: Any,
        fields: Iterable[mi.Field],
        path: str,
        active: frozenset[Any],
        *,
        build: Callable[..., Any],
    ) -> st.SearchStrategy[Any]:
        """Structs and their kin: required fields always, defaulted ones sometimes."""
        if cls in active:
            raise self.refuse(
                path, f"{_label(cls)} contains itself; recursive types are not supported"
            )
        inner = active | {cls}
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for field in fields:
            strategy = self.strategy(field.type, f"{path}.{field.name}", inner)
            (required if field.required else optional)[field.name] = strategy
        return st.fixed_dictionaries(required, optional=optional).map(
            lambda values: build(**values)
        )

    def ints(self, info: mi.IntType, path: str) -> st.SearchStrategy[int]:
        low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else INT_MIN)
        high = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else INT_MAX)
        step = info.multiple_of
        if step:
            low, high = -(-low // step), high // step  # the multiples of step in [low, high]
        if low > high:
            raise self.refuse(path, f"no integer satisfies {info!r}")
        if step:
            return st.integers(low, high).map(lambda k: k * step)
        return st.integers(low, high)

    def floats(self, info: mi.FloatType, path: str) -> st.SearchStrategy[float]:
        low = info.ge if info.ge is not None else info.gt
        high = info.le if info.le is not None else info.lt
        bounded = st.floats(
            min_value=low,
            max_value=high,
            exclude_min=info.gt is not None,
            exclude_max=info.lt is not None,
            allow_nan=False,
            allow_infinity=False,
        )
        step = info.multiple_of
        if not step:
            return bounded
        # msgspec requires fmod(x, step) == 0 exactly, which k * step fails whenever the product
        # rounds (0.3 is not a multiple of 0.1 for it). The product is exact when k has at most
        # 54 - (bits of step's significand) significant bits, so k is drawn within the bounds
        # and then trimmed to that many bits; the filter catches what trimming pushed out.
        significand, _ = step.as_integer_ratio()
        keep = max(1, 54 - abs(significand).bit_length())
        valid = Annotated[
            float, msgspec.Meta(gt=info.gt, ge=info.ge, lt=info.lt, le=info.le, multiple_of=step)
        ]

        def exact_multiple(k: int) -> float:
            shift = max(0, abs(k).bit_length() - keep)
            trimmed = (abs(k) >> shift) << shift
            return float(trimmed if k >= 0 else -trimmed) * step

        def passes(value: float) -> bool:
            try:
                msgspec.convert(value, valid)
            except msgspec.ValidationError:
                return False
            return True

        first = -(2**53) if low is None else math.ceil(low / step)
        last = 2**53 if high is None else math.floor(high / step)
        if first > last:
            raise self.refuse(path, f"no float satisfies {info!r}")
        return _satisfying(st.integers(first, last).map(exact_multiple), passes)

    def strings(self, info: mi.StrType) -> st.SearchStrategy[str]:
        low, high = info.min_length or 0, info.max_length
        if info.pattern is None:
            return st.text(min_size=low, max_size=high)
        pattern = re.compile(info.pattern)

        def fits(value: str) -> bool:
            # msgspec matches its pattern with re.search; check exactly what it will check.
            in_range = low <= len(value) and (high is None or len(value) <= high)
            return in_range and pattern.search(value) is not None

        return _satisfying(st.from_regex(pattern, fullmatch=True), fits)


#: Draws ``_satisfying`` makes before giving up on an example.
_ATTEMPTS = 25


def _satisfying(base: st.SearchStrategy[T], test: Callable[[T], bool]) -> st.SearchStrategy[T]:
    """``base.filter(test)``, with more patience.

    ``filter`` gives up after three draws, too few when a length bound rejects most of what a
    pattern yields (``^[a-z]+$`` within 3..4 characters), and hypothesis then fails the test
    for filtering too much. This draws up to ``_ATTEMPTS`` times before rejecting the example.
    """

    @st.composite
    def draw_satisfying(draw: st.DrawFn) -> T:
        for _ in range(_ATTEMPTS):
            value = draw(base)
            if test(value):
                return value
        reject()

    return draw_satisfying()


class _Sizes(TypedDict):
    min_size: int
    max_size: int


def _sizes(
    info: mi.ListType
    | mi.VarTupleType
    | mi.SetType
    | mi.FrozenSetType
    | mi.DictType
    | mi.FrozenDictType,
) -> _Sizes:
    low = info.min_length or 0
    high = low + MAX_EXTRA_ITEMS
    if info.max_length is not None:
        high = min(high, info.max_length)
    return {"min_size": low, "max_size": high}
