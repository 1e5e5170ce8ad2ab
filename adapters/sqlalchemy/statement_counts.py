"""How many SQL statements and transactions this process ran, by module (and on PostgreSQL
how many transactions sent their ``BEGIN`` with their first statement, and how many
statements went in another one, which tells its round trips): what the bench divides by
the orders it placed, so that a regression in CPU per order shows where it comes from.

Counting is off unless ``CLEAVE_BENCH_COUNT_SQL=1``: it adds a Python listener to every
statement. The module is read from the statement's first table (every table carries its
module's name as a prefix: ``ordering_outbox``), and the table's role (``outbox``,
``inbox``, ``dead_letters``, ``timers`` or the module's own ``state``) goes with it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: The variable that turns counting on in a process.
COUNT_VARIABLE = "CLEAVE_BENCH_COUNT_SQL"

_FIRST_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(?:\w+"?\.)?"?(\w+)', re.IGNORECASE)
_ROLES = ("outbox", "inbox", "dead_letters", "timers")


class StatementCounts:
    """Counters of this process, read by ``/metrics``."""

    def __init__(self) -> None:
        #: Statements by (module, kind, table role); kind is select, insert, update, delete
        #: or other. An ``executemany`` is one statement: one round trip.
        self.statements: Counter[tuple[str, str, str]] = Counter()
        #: Transactions that ran at least one statement, by module (of the first statement);
        #: a statement in autocommit mode is none.
        self.transactions: Counter[str] = Counter()
        #: PostgreSQL transactions whose ``BEGIN`` went in one message with their first
        #: statement (``begin_with``), by module. Each other transaction pays a round trip
        #: for its ``BEGIN``, and each one for its ``COMMIT`` or ``ROLLBACK``, so a process's
        #: round trips to PostgreSQL are its statements + 2 x its transactions - these - its
        #: statements sent along (below; a statement's first preparation on a connection
        #: aside).
        self.begun_with: Counter[str] = Counter()
        #: PostgreSQL statements sent in one statement with another (``held_writes``), by
        #: module: each is counted as a statement, and costs no round trip of its own.
        self.sent_along: Counter[str] = Counter()

    def clear(self) -> None:
        self.statements.clear()
        self.transactions.clear()
        self.begun_with.clear()
        self.sent_along.clear()


#: The counts of this process (every engine of it adds to them).
COUNTS = StatementCounts()


def counting_enabled() -> bool:
    return os.environ.get(COUNT_VARIABLE, "") not in ("", "0")


@lru_cache(maxsize=2048)
def classify(statement: str) -> tuple[str, str, str]:
    """(module, kind, table role) of one SQL statement (the hot path's statements are built
    once, so their text repeats: remembered, they cost a lookup)."""
    words = statement.lstrip().split(None, 1)
    kind = words[0].lower() if words else "other"
    if kind not in ("select", "insert", "update", "delete"):
        kind = "other"
    found = _FIRST_TABLE.search(statement)
    if found is None:
        return "-", kind, "-"
    table = found.group(1).lower()
    module, _, rest = table.partition("_")
    role = rest if rest in _ROLES else "state"
    return module, kind, role


def count_begun_with(statement: str, counts: StatementCounts = COUNTS) -> None:
    """Count a transaction whose ``BEGIN`` went with ``statement``, its first."""
    counts.begun_with[classify(statement)[0]] += 1


def count_sent_along(statement: str, counts: StatementCounts = COUNTS) -> None:
    """Count a statement sent in one statement with another (no round trip of its own)."""
    counts.sent_along[classify(statement)[0]] += 1


#: What the hot path (``hot_sql``) calls for each of its statements, with the arguments of
#: a ``before_cursor_execute`` listener.
Announce = Callable[[Connection, Any, str, Any, Any, bool], object]


def count_statements(engine: Engine, counts: StatementCounts = COUNTS) -> Announce:
    """Count every statement and transaction ``engine`` runs into ``counts``; returns the
    counter of statements, for the hot path to call directly.

    The bench measures CPU per order with the counter on, so the counter keeps out of its
    own way: the hot path's statements (most of them) call it directly rather than through
    SQLAlchemy's event dispatch, which cost more than the count; the module of the
    transaction under way is kept by connection here rather than in ``connection.info``
    (three properties deep); the listener returns its arguments itself (``retval``) instead
    of through SQLAlchemy's wrapper."""
    statements = counts.statements
    #: The module of the transaction under way, by ``id`` of its connection; none for an
    #: autocommit connection, whose statements are no transaction.
    under_way: dict[int, str] = {}

    def _statement(
        connection: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> tuple[str, Any]:
        key = classify(statement)
        statements[key] += 1
        if (
            key[1] != "other"
            and id(connection) not in under_way
            and connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT"
        ):
            under_way[id(connection)] = key[0]
        return statement, parameters

    def _ended(connection: Connection, *args: Any) -> None:
        module = under_way.pop(id(connection), None)
        if module is not None:
            counts.transactions[module] += 1

    event.listen(engine, "before_cursor_execute", _statement, retval=True)
    event.listen(engine, "commit", _ended)
    event.listen(engine, "rollback", _ended)
    return _statement
