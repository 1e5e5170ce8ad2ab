"""How many SQL statements and transactions this process ran, by module: what the bench
divides by the orders it placed, so that a regression in CPU per order shows where it comes
from.

Counting is off unless ``CLEAVE_BENCH_COUNT_SQL=1``: it adds a Python listener to every
statement. The module is read from the statement's first table (every table carries its
module's name as a prefix: ``ordering_outbox``), and the table's role (``outbox``,
``inbox``, ``dead_letters``, ``timers`` or the module's own ``state``) goes with it.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from functools import lru_cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

#: The variable that turns counting on in a process.
COUNT_VARIABLE = "CLEAVE_BENCH_COUNT_SQL"

_FIRST_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(?:\w+"?\.)?"?(\w+)', re.IGNORECASE)
_ROLES = ("outbox", "inbox", "dead_letters", "timers")
#: Where a connection keeps the module of the transaction under way (its ``info``).
_MODULE = "cleave_counted_module"


class StatementCounts:
    """Counters of this process, read by ``/metrics``."""

    def __init__(self) -> None:
        #: Statements by (module, kind, table role); kind is select, insert, update, delete
        #: or other. An ``executemany`` is one statement: one round trip.
        self.statements: Counter[tuple[str, str, str]] = Counter()
        #: Transactions that ran at least one statement, by module (of the first statement);
        #: a statement in autocommit mode is none.
        self.transactions: Counter[str] = Counter()

    def clear(self) -> None:
        self.statements.clear()
        self.transactions.clear()


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


def count_statements(engine: Engine, counts: StatementCounts = COUNTS) -> None:
    """Count every statement and transaction ``engine`` runs into ``counts``."""

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(
        connection: Connection, cursor: Any, statement: str, *args: Any, **kwargs: Any
    ) -> None:
        module, kind, role = classify(statement)
        counts.statements[(module, kind, role)] += 1
        if kind != "other" and _MODULE not in connection.info:
            connection.info[_MODULE] = module

    def _ended(connection: Connection, *args: Any) -> None:
        module = connection.info.pop(_MODULE, None)
        # A statement committed on its own (``one_statement``) was no transaction: no
        # BEGIN or COMMIT went to the server.
        autocommit = connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        if module is not None and not autocommit:
            counts.transactions[module] += 1

    event.listen(engine, "commit", _ended)
    event.listen(engine, "rollback", _ended)
