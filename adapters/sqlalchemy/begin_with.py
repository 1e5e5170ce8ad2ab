"""PostgreSQL: a transaction's ``BEGIN`` sent in one message with its first statement.

asyncpg starts a transaction with a round trip of its own (``BEGIN``), and each unit of work
of the order flow begins with one: seven of an order's eight transactions, each a handler
whose first statement is its inbox check-in (an ``INSERT ... ON CONFLICT DO NOTHING`` that
only answers how many rows it wrote). PostgreSQL's simple query protocol runs several
statements sent as one text, in order, and asyncpg answers the last one's command tag
(``INSERT 0 1``): so ``BEGIN; INSERT ...`` is one round trip instead of two, with the same
transaction and the same rows.

The simple protocol takes no parameters, so the statement's values are written into its
text. Only values that need no escaping at all are (ASCII letters, digits and ``_.:@/+=-``,
whole and finite numbers, ``NULL``), in a statement whose text has no quote or dollar sign
of its own; anything else (a quote, a backslash, a NUL byte, non-ASCII text, a boolean, a
date) leaves the statement to its prepared form behind a separate ``BEGIN``. The server then
parses and plans that one statement each time instead of reusing its prepared plan: a tiny
cost on its side against a round trip on ours (ADR 17).
"""

from __future__ import annotations

import math
import re
from typing import Any

#: A string value written into the SQL as it is, between single quotes.
_PLAIN = re.compile(r"[A-Za-z0-9_.:@/+=-]*")
#: asyncpg's positional parameters in a statement's text.
_PLACEHOLDER = re.compile(r"\$(\d+)")
#: ``BEGIN`` as asyncpg's ``Transaction.start`` words it, by isolation level.
_ISOLATION = {
    None: "",
    "read_committed": " ISOLATION LEVEL READ COMMITTED",
    "read_uncommitted": " ISOLATION LEVEL READ UNCOMMITTED",
    "repeatable_read": " ISOLATION LEVEL REPEATABLE READ",
    "serializable": " ISOLATION LEVEL SERIALIZABLE",
}
#: Statement texts split at their placeholders (``None``: not to be rewritten), by text.
_SPLIT: dict[str, tuple[str, ...] | None] = {}
_SPLIT_AT_MOST = 512


def _literal(value: Any) -> str | None:
    kind = type(value)  # exactly: a bool is no int here, a str subclass may print otherwise
    if kind is str:
        return f"'{value}'" if _PLAIN.fullmatch(value) else None
    if kind is int:
        return f"'{value}'"
    if kind is float:
        return f"'{value!r}'" if math.isfinite(value) else None
    if value is None:
        return "NULL"
    return None


def placeholder_pieces(sql: str) -> tuple[str, ...] | None:
    """``sql`` split at its ``$n`` placeholders (text, number, text, ...), or ``None`` if it
    has a quote or a dollar sign of its own (a ``$n`` in a literal would be taken for one):
    the texts this module and ``held_writes`` may rewrite."""
    found = _SPLIT.get(sql, False)
    if found is False:
        pieces = None if "'" in sql or '"' in sql else tuple(_PLACEHOLDER.split(sql))
        if pieces is not None and "$" in "".join(pieces[::2]):
            pieces = None  # a dollar sign that is not a placeholder
        if len(_SPLIT) >= _SPLIT_AT_MOST:
            _SPLIT.clear()
        found = _SPLIT[sql] = pieces
    return found  # type: ignore[return-value]


def inlined(sql: str, values: tuple[Any, ...]) -> str | None:
    """``sql`` with its ``$n`` placeholders replaced by ``values`` written as literals, or
    ``None`` if a value (or the text) is not plain enough to be written without escaping."""
    pieces = placeholder_pieces(sql)
    if pieces is None:
        return None
    out = [pieces[0]]
    for index in range(1, len(pieces), 2):
        position = int(pieces[index]) - 1
        if position >= len(values):
            return None
        literal = _literal(values[position])
        if literal is None:
            return None
        out.append(literal)
        out.append(pieces[index + 1])
    return "".join(out)


def can_begin_with(adapter: Any) -> bool:
    """Whether ``adapter`` (SQLAlchemy's asyncpg connection adapter) has no transaction yet
    and one that this module knows how to begin."""
    return (
        adapter._transaction is None
        and adapter.isolation_level in _ISOLATION
        and adapter._connection._top_xact is None
        and not adapter._connection._protocol.is_in_transaction()
    )


async def begin_with(adapter: Any, statement: str) -> str:
    """Begin ``adapter``'s transaction and run ``statement`` (its values written in) in one
    round trip; returns the statement's command tag.

    The transaction is asyncpg's, as ``Transaction.start`` leaves it, and the adapter's, as
    SQLAlchemy's ``_start_transaction`` leaves it: commit and rollback are theirs. If the
    statement fails after ``BEGIN`` went through, the transaction is kept (the server has
    it open, failed) so that the rollback ends it."""
    connection = adapter._connection
    transaction = connection.transaction(
        isolation=adapter.isolation_level,
        readonly=adapter.readonly,
        deferrable=adapter.deferrable,
    )
    begin = "BEGIN" + _ISOLATION[adapter.isolation_level]
    if adapter.readonly:
        begin += " READ ONLY"
    if adapter.deferrable:
        begin += " DEFERRABLE"
    # asyncpg's TransactionState, reached through the transaction: a SQLite-only process
    # never imports asyncpg.
    states = type(transaction._state)
    connection._top_xact = transaction
    try:
        status: str = await connection.execute(f"{begin}; {statement}")
    except BaseException:
        if connection._protocol.is_in_transaction():
            transaction._state = states.STARTED
            adapter._transaction = transaction
        else:
            transaction._state = states.FAILED
            connection._top_xact = None
        raise
    transaction._state = states.STARTED
    adapter._transaction = transaction
    return status
