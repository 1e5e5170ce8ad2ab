"""The two checks every module's repository makes on a write, written once, and the write
that makes them itself (``write_checked``).

The kernel does not know the storage library: a repository passes in the exception its
driver raises (SQLAlchemy's ``IntegrityError``), and the row count it got back; or it hands
the write to the connection, which checks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kernel.errors import CleaveError, ConcurrencyConflict


def expect_one_row(rowcount: int | None, what: str) -> None:
    """Raise ``ConcurrencyConflict`` unless a conditional write changed exactly one row.

    An update guarded by the version (or the status) it read matches no row when another unit
    of work changed ``what`` meanwhile: the unit of work is then run again from the start.
    """
    if rowcount != 1:
        raise ConcurrencyConflict(f"{what} changed meanwhile")


@contextmanager
def conflict_on(raised: type[Exception], conflict: CleaveError) -> Iterator[None]:
    """Raise ``conflict`` instead of ``raised`` (a unique key the write broke), chained to it.

    ``with conflict_on(IntegrityError, ConcurrencyConflict(f"order {id} exists")):`` around an
    insert turns a duplicate into a rerun of the unit of work; a ``Conflict`` with a code
    tells the caller instead. Either way the transaction is unusable now: the error ends it.
    """
    try:
        yield
    except raised as error:
        raise conflict from error


async def write_checked(
    connection: Any,
    statement: Any,
    parameters: Mapping[str, Any],
    *,
    what: str,
    rows: int = 1,
    exists: str | None = None,
) -> None:
    """Write, and raise ``ConcurrencyConflict`` unless the write touched ``rows`` rows
    (``f"{what} changed meanwhile"``) or, with ``exists``, if it broke a unique key
    (``ConcurrencyConflict(exists)``): the unit of work then runs again from the start.

    ``connection`` is the unit of work's (``Transaction.connection()``). It may hold the
    write back and send it with the unit's outbox records when it commits (on PostgreSQL
    one round trip for them all, ADR 17), or before a statement that needs it sent first
    (one that reads its table). The conflict is then raised there, still before anything
    is stored. So a handler does what reaches outside
    its transaction (a payment provider's call) before such writes, not between them and
    the end of its unit of work.
    """
    await connection.hold(statement, parameters, rows=rows, what=what, exists=exists)
