"""The repositories' two write checks, against a real SQLite database (the standard library's
driver: the kernel is handed the exception type, whichever driver raises it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from kernel import ConcurrencyConflict, Conflict, conflict_on, expect_one_row


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE items (sku TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    connection.execute("INSERT INTO items VALUES ('TEA', 0)")
    yield connection
    connection.close()


def test_a_duplicate_key_raises_the_conflict_given_chained_to_the_driver_error(
    db: sqlite3.Connection,
) -> None:
    duplicate = Conflict("TEA exists", code="catalog.duplicate_sku", field="sku")
    with pytest.raises(Conflict) as raised, conflict_on(sqlite3.IntegrityError, duplicate):
        db.execute("INSERT INTO items VALUES ('TEA', 0)")
    assert raised.value is duplicate
    assert isinstance(raised.value.__cause__, sqlite3.IntegrityError)


def test_a_write_that_breaks_no_key_passes_and_other_errors_pass_through(
    db: sqlite3.Connection,
) -> None:
    with conflict_on(sqlite3.IntegrityError, ConcurrencyConflict("never")):
        db.execute("INSERT INTO items VALUES ('COFFEE', 0)")
    assert db.execute("SELECT count(*) FROM items").fetchone() == (2,)
    with (
        pytest.raises(sqlite3.OperationalError),
        conflict_on(sqlite3.IntegrityError, ConcurrencyConflict("never")),
    ):
        db.execute("INSERT INTO no_such_table VALUES (1)")


def test_an_update_guarded_by_a_stale_version_is_a_concurrency_conflict(
    db: sqlite3.Connection,
) -> None:
    update = "UPDATE items SET version = version + 1 WHERE sku = 'TEA' AND version = ?"
    expect_one_row(db.execute(update, (0,)).rowcount, "item TEA")  # the version read: 1 row
    with pytest.raises(ConcurrencyConflict, match=r"^item TEA changed meanwhile$"):
        expect_one_row(db.execute(update, (0,)).rowcount, "item TEA")  # stale now: 0 rows
