"""Checked writes held to go in one statement with the outbox's records (PostgreSQL): how
the statement is put together."""

from __future__ import annotations

from adapters.sqlalchemy.held_writes import composed

OUTBOX = (
    "INSERT INTO m_outbox (a, b) SELECT unnest($1::INT[]), unnest($2::INT[]) RETURNING m_outbox.id"
)


def test_held_writes_go_before_the_statement_numbered_after_its_parameters() -> None:
    text = composed(
        OUTBOX,
        [
            "UPDATE m_sagas SET step=$1 WHERE id = $2 AND version = $3",
            "INSERT INTO m_x (k) VALUES ($1)",
        ],
    )
    assert text == (
        "WITH held_0 AS (UPDATE m_sagas SET step=$3 WHERE id = $4 AND version = $5 RETURNING 1), "
        "held_1 AS (INSERT INTO m_x (k) VALUES ($6) RETURNING 1) "
        f"{OUTBOX}, "
        "(SELECT count(*) FROM held_0) AS held_0, (SELECT count(*) FROM held_1) AS held_1"
    )


def test_a_text_with_a_quote_is_not_put_together() -> None:
    # A "$1" inside a literal would be renumbered as if it were a parameter.
    assert composed(OUTBOX, ["UPDATE m_x SET note = '$1' WHERE id = $1"]) is None
    assert composed("INSERT INTO m_x (k) VALUES ($1)", ["UPDATE m_x SET k = $1"]) is None
