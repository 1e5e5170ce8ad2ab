"""The outbox, inbox, dead-letter and timer tables each module gets in its own database.

They are named after the module (``ordering_outbox``...), so no two modules share a table,
and they live beside the module's own tables so that a state change, the messages it emits
and the inbox record of the message that caused it commit in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

_Id = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class MessagingTables:
    metadata: MetaData
    outbox: Table
    inbox: Table
    dead_letters: Table
    timers: Table


_cache: dict[str, MessagingTables] = {}


def messaging_tables(module: str) -> MessagingTables:
    """The messaging tables of ``module`` (defined once per process)."""
    tables = _cache.get(module)
    if tables is None:
        tables = _cache[module] = _define(module)
    return tables


#: The columns that describe one delivery: the same in the outbox and the dead letters, so a
#: record moves between the two unchanged.
MESSAGE_FIELDS = ("message_id", "target", "name", "partition", "envelope", "body")


def _message_columns() -> list[Column[Any]]:
    return [
        Column("message_id", String(64), nullable=False),
        Column("target", String(200), nullable=False),
        Column("name", String(200), nullable=False),
        Column("partition", String(200), nullable=True),
        Column("envelope", Text, nullable=False),
        Column("body", Text, nullable=False),
    ]


def message_fields(row: Any) -> dict[str, Any]:
    """The delivery described by an outbox or dead-letter row, to write into the other."""
    return {field: getattr(row, field) for field in MESSAGE_FIELDS}


def _define(module: str) -> MessagingTables:
    metadata = MetaData()
    outbox = Table(
        f"{module}_outbox",
        metadata,
        Column("id", _Id, primary_key=True, autoincrement=True),
        *_message_columns(),
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", Float, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("last_error", Text, nullable=True),
        Index(f"ix_{module}_outbox_due", "next_attempt_at"),
        Index(f"ix_{module}_outbox_partition", "target", "partition", "id"),
        # Ids must never be reused: they order deliveries, and a relay that settles a record
        # by id must not hit a newer record that inherited the id (SQLite reuses the highest
        # rowid after a delete unless AUTOINCREMENT is on).
        sqlite_autoincrement=True,
    )
    inbox = Table(
        f"{module}_inbox",
        metadata,
        Column("handler", String(200), primary_key=True),
        Column("message_id", String(64), primary_key=True),
        Column("handled_at", Float, nullable=False),
    )
    dead_letters = Table(
        f"{module}_dead_letters",
        metadata,
        Column("id", _Id, primary_key=True, autoincrement=True),
        *_message_columns(),
        Column("attempts", Integer, nullable=False),
        Column("reason", Text, nullable=False),
        Column("failed_at", Float, nullable=False),
        sqlite_autoincrement=True,
    )
    # When each timer of the module fires next: the instances of a module share it, so one
    # of them fires in each period.
    timers = Table(
        f"{module}_timers",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("next_run_at", Float, nullable=False),
    )
    return MessagingTables(metadata, outbox, inbox, dead_letters, timers)
