"""SQL statements and transactions per order: read from each process's ``/metrics``
(``cleave_sql_statements_total``, ``cleave_sql_transactions_total``, counted when
``CLEAVE_BENCH_COUNT_SQL=1``) before and after a load, divided by the orders it settled."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from adapters.sqlalchemy.statement_counts import StatementCounts


@dataclass
class SqlCounts:
    """Statements by (module, kind, table) and transactions by module, summed over processes."""

    statements: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    transactions: Counter[str] = field(default_factory=Counter)
    #: PostgreSQL transactions whose BEGIN went with their first statement, by module.
    begun_with: Counter[str] = field(default_factory=Counter)
    #: PostgreSQL statements sent in one statement with another, by module.
    sent_along: Counter[str] = field(default_factory=Counter)

    def __sub__(self, before: SqlCounts) -> SqlCounts:
        return SqlCounts(
            self.statements - before.statements,
            self.transactions - before.transactions,
            self.begun_with - before.begun_with,
            self.sent_along - before.sent_along,
        )

    @property
    def total_statements(self) -> int:
        return sum(self.statements.values())

    @property
    def total_transactions(self) -> int:
        return sum(self.transactions.values())

    @property
    def round_trips(self) -> int:
        """Round trips to PostgreSQL: each statement not sent along with another, each BEGIN
        not sent with its first statement, each COMMIT or ROLLBACK (on SQLite, which has
        none, the same sum counts the calls into it)."""
        return (
            self.total_statements
            + 2 * self.total_transactions
            - sum(self.begun_with.values())
            - sum(self.sent_along.values())
        )


def parse(text: str) -> SqlCounts:
    """The counts in one ``/metrics`` answer."""
    counts = SqlCounts()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cleave_sql_statements_total":
                key = (sample.labels["module"], sample.labels["kind"], sample.labels["table"])
                counts.statements[key] += int(sample.value)
            elif sample.name == "cleave_sql_transactions_total":
                counts.transactions[sample.labels["module"]] += int(sample.value)
            elif sample.name == "cleave_sql_begun_with_statement_total":
                counts.begun_with[sample.labels["module"]] += int(sample.value)
            elif sample.name == "cleave_sql_sent_along_statement_total":
                counts.sent_along[sample.labels["module"]] += int(sample.value)
    return counts


async def scrape(urls: list[str]) -> SqlCounts | None:
    """The counts of every process at ``urls`` together; None if one does not answer or
    does not count."""
    total = SqlCounts()
    async with httpx.AsyncClient(timeout=5) as client:
        answers = await asyncio.gather(
            *(client.get(f"{url}/metrics") for url in urls), return_exceptions=True
        )
    for answer in answers:
        if isinstance(answer, BaseException) or answer.status_code != 200:
            return None
        found = parse(answer.text)
        total.statements.update(found.statements)
        total.transactions.update(found.transactions)
        total.begun_with.update(found.begun_with)
        total.sent_along.update(found.sent_along)
    if not total.statements:
        return None
    return total


def statement_report(counts: StatementCounts | SqlCounts, orders: int) -> str:
    """Statements and transactions per order, by kind and table, as lines for a terminal."""
    by_kind: Counter[str] = Counter()
    by_table: Counter[str] = Counter()
    for (_, kind, table), count in counts.statements.items():
        by_kind[kind] += count
        by_table[f"{kind} {table}"] += count
    each = max(1, orders)
    lines = [
        f"SQL per order: {sum(counts.statements.values()) / each:.1f} statements in "
        f"{sum(counts.transactions.values()) / each:.1f} transactions",
        "  by kind: "
        + ", ".join(f"{kind} {count / each:.1f}" for kind, count in by_kind.most_common()),
        "  by kind and table: "
        + ", ".join(f"{key} {count / each:.1f}" for key, count in by_table.most_common()),
    ]
    return "\n".join(lines)


def round_trips_per_order(counts: SqlCounts | None, orders: int) -> float:
    """Round trips to the database per order (``SqlCounts.round_trips``), NaN when not
    counted."""
    if counts is None or not orders:
        return float("nan")
    return counts.round_trips / orders


def per_order(counts: SqlCounts | None, orders: int) -> tuple[float, float]:
    """(statements, transactions) per order, NaN when not counted."""
    if counts is None or not orders:
        return float("nan"), float("nan")
    return counts.total_statements / orders, counts.total_transactions / orders
