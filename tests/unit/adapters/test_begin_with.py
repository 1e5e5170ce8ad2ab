"""Which values ``begin_with`` writes into a statement's text: only those that need no
escaping; anything else leaves the statement to be sent with parameters."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.sqlalchemy.begin_with import inlined

CHECK_IN = (
    "INSERT INTO ordering_inbox (handler, message_id, handled_at) VALUES"
    " ($1::VARCHAR, $2::VARCHAR, $3::FLOAT) ON CONFLICT DO NOTHING"
)


def test_plain_values_are_written_in_place_of_their_placeholders() -> None:
    assert inlined(CHECK_IN, ("ordering.place_order", "0193a1b2-c3d4:e5/f6+g=", 1.25)) == (
        "INSERT INTO ordering_inbox (handler, message_id, handled_at) VALUES"
        " ('ordering.place_order'::VARCHAR, '0193a1b2-c3d4:e5/f6+g='::VARCHAR, '1.25'::FLOAT)"
        " ON CONFLICT DO NOTHING"
    )
    assert inlined("UPDATE t SET a = $2 WHERE b = $1", (7, None)) == (
        "UPDATE t SET a = NULL WHERE b = '7'"
    )
    # A float keeps every digit: the server reads back exactly the value given.
    assert inlined("SELECT $1::FLOAT", (0.1 + 0.2,)) == "SELECT '0.30000000000000004'::FLOAT"


@pytest.mark.parametrize(
    "value",
    [
        "it's",
        "back\\slash",
        "nul\x00byte",
        "é",
        "two words",
        "semi;colon",
        "$1",
        True,
        b"bytes",
        float("nan"),
        float("inf"),
        ["a"],
    ],
)
def test_a_value_that_needs_escaping_or_a_type_is_not_written(value: Any) -> None:
    assert inlined(CHECK_IN, ("ordering.h", value, 1.0)) is None


def test_a_statement_with_quotes_or_dollars_of_its_own_is_not_rewritten() -> None:
    assert inlined("INSERT INTO t (a, b) VALUES ($1, 'x')", ("a",)) is None
    assert inlined('INSERT INTO "T" (a) VALUES ($1)', ("a",)) is None
    assert inlined("SELECT $$text$$ || $1", ("a",)) is None
    assert inlined("SELECT $2", ("a",)) is None  # a placeholder without its value
