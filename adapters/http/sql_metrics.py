"""``/metrics`` families of the SQL statements and transactions this process ran, and of its
PostgreSQL transactions begun with their first statement and statements sent along with
another (only when
``CLEAVE_BENCH_COUNT_SQL`` turns counting on: see ``adapters.sqlalchemy.statement_counts``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from adapters.sqlalchemy.statement_counts import COUNTS, StatementCounts


class StatementCollector:
    """Reads the process's statement and transaction counters when Prometheus scrapes."""

    def __init__(self, counts: StatementCounts = COUNTS) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        statements = CounterMetricFamily(
            "cleave_sql_statements",
            "SQL statements this process ran, by module, kind (select, insert, update, delete, "
            "other) and table (outbox, inbox, dead_letters, timers or the module's state)",
            labels=["module", "kind", "table"],
        )
        for (module, kind, table), count in sorted(self._counts.statements.items()):
            statements.add_metric([module, kind, table], count)
        yield statements
        yield _by_module(
            "cleave_sql_transactions",
            "SQL transactions this process ran (committed or rolled back, with at least one "
            "statement), by the module of their first statement",
            self._counts.transactions,
        )
        yield _by_module(
            "cleave_sql_begun_with_statement",
            "PostgreSQL transactions whose BEGIN went in one message with their first "
            "statement, by module (round trips = statements + 2 x transactions - these)",
            self._counts.begun_with,
        )
        yield _by_module(
            "cleave_sql_sent_along_statement",
            "PostgreSQL statements sent in one statement with another (checked writes with "
            "the outbox's records), by module: round trips are these fewer",
            self._counts.sent_along,
        )


def _by_module(name: str, documentation: str, counts: Counter[str]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=["module"])
    for module, count in sorted(counts.items()):
        family.add_metric([module], count)
    return family
