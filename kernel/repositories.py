"""The two checks every module's repository makes on a write, written once.

The kernel does not know the storage library: a repository passes in the exception its
driver raises (SQLAlchemy's ``IntegrityError``), and the row count it got back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
