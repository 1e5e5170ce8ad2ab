"""Checked writes held back to go with a unit of work's outbox records (PostgreSQL).

A handler's last writes (a saga's new step, a stock's new level, a new charge) are each a
statement that only answers how many rows it touched, followed by the outbox's
``INSERT ... RETURNING``: a round trip each. ``write_checked`` lets the connection hold
them; when the outbox records are written, the held writes go in the same statement as
data-modifying ``WITH`` queries, each answering its count in an extra column of the
``RETURNING``::

    WITH held_0 AS (UPDATE ordering_sagas SET ... WHERE ... AND version = $10 RETURNING 1)
    INSERT INTO ordering_outbox (...) SELECT unnest($1::VARCHAR(64)[]), ...
    RETURNING id, message_id, target, (...) AS behind, (SELECT count(*) FROM held_0)

One round trip instead of two or three, the same rows, in the same transaction, and the same
conflicts, raised before the ``COMMIT`` is sent. Any other statement sends what is held
first, one statement each, as they would have gone: a read sees the unit's own writes, and
a write's order is kept. PostgreSQL runs the parts of one statement on one snapshot, so
each part must touch a table of its own: a held write of a table already held goes alone
first, and the outbox's ``RETURNING`` reads only the outbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from adapters.sqlalchemy.begin_with import placeholder_pieces
from kernel.errors import ConcurrencyConflict

#: Composed texts by the texts they are made of (a few per handler).
_COMPOSED: dict[tuple[str, ...], str] = {}
_COMPOSED_AT_MOST = 256


class HeldWrite:
    """A write handed to ``write_checked``: its statement, and what it must have done."""

    __slots__ = ("exists", "parameters", "rows", "statement", "table", "what")

    def __init__(
        self,
        statement: Any,
        parameters: Mapping[str, Any],
        *,
        rows: int,
        what: str,
        exists: str | None,
    ) -> None:
        self.statement = statement
        self.parameters = parameters
        self.rows = rows
        self.what = what
        self.exists = exists
        table = getattr(statement, "table", None)
        self.table: str | None = getattr(table, "name", None)

    def check(self, rowcount: int) -> None:
        """``ConcurrencyConflict`` unless the write touched the rows it had to."""
        if rowcount != self.rows:
            raise ConcurrencyConflict(f"{self.what} changed meanwhile")

    def conflict(self, error: IntegrityError) -> ConcurrencyConflict | None:
        """The conflict a broken key of this write's table means, if the write says one."""
        if self.exists is None or self.table is None:
            return None
        found = error_table(error)
        return ConcurrencyConflict(self.exists) if found in (None, self.table) else None

    async def run(self, connection: Any) -> None:
        """Send it now, alone (SQLite, or a PostgreSQL statement that needs it sent)."""
        try:
            result = await connection.execute(self.statement, self.parameters)
        except IntegrityError as error:
            conflict = self.conflict(error)
            if conflict is None:
                raise
            raise conflict from error
        self.check(result.rowcount)


def error_table(error: IntegrityError) -> str | None:
    """The table whose key ``error`` broke, as PostgreSQL names it (asyncpg's error, under
    SQLAlchemy's and its adapter's), if known."""
    cause: BaseException | None = error.orig
    while cause is not None:
        table = getattr(cause, "table_name", None)
        if table:
            return str(table)
        cause = cause.__cause__
    return None


def composed(main: str, held: Sequence[str]) -> str | None:
    """``main`` (a statement ending with its ``RETURNING`` list) with the ``held`` statements
    as ``WITH`` queries before it and their counts after its own columns, placeholders
    numbered on; ``None`` if a text cannot be rewritten (``placeholder_pieces``)."""
    key = (main, *held)
    found = _COMPOSED.get(key)
    if found is not None:
        return found
    main_pieces = placeholder_pieces(main)
    if main_pieces is None or "RETURNING" not in main:
        return None
    offset = _placeholders(main_pieces)
    parts = []
    counts = []
    for index, text in enumerate(held):
        pieces = placeholder_pieces(text)
        if pieces is None:
            return None
        renumbered = "".join(
            f"${int(piece) + offset}" if position % 2 else piece
            for position, piece in enumerate(pieces)
        )
        parts.append(f"held_{index} AS ({renumbered} RETURNING 1)")
        counts.append(f"(SELECT count(*) FROM held_{index}) AS held_{index}")
        offset += _placeholders(pieces)
    text = f"WITH {', '.join(parts)} {main}, {', '.join(counts)}"
    if len(_COMPOSED) >= _COMPOSED_AT_MOST:
        _COMPOSED.clear()
    _COMPOSED[key] = text
    return text


def _placeholders(pieces: tuple[str, ...]) -> int:
    """The highest placeholder number of a text split by ``placeholder_pieces``."""
    return max((int(number) for number in pieces[1::2]), default=0)
