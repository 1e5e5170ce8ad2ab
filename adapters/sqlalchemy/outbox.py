"""The outbox store of a module's SQL storage: what its relay reads and settles."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    any_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)

from adapters.sqlalchemy.messaging_tables import message_fields
from adapters.sqlalchemy.storage import SqlStorage, one_statement, write_transaction
from kernel.errors import PoisonMessage
from kernel.outbox import OutboxRecord

#: The longest an idle SQLite outbox goes unread while its files look unchanged: a write in
#: the same clock tick as the last look, rewriting a reused WAL to the same size, would not
#: show in the files' size and time.
QUIET_LOOK_SECONDS = 10.0


@dataclass(frozen=True)
class _Quiet:
    """What an idle poll found: nothing due, the files as they were before that read, and
    when the earliest record waiting for a later attempt comes due."""

    files: tuple[tuple[int, int, int] | None, ...]
    wake_at: float
    since: float


class SqlOutboxStore:
    """The ``OutboxStore`` over a module's outbox and dead-letter tables.

    On PostgreSQL several instances of a module may share the outbox: reading records claims
    them (``FOR UPDATE SKIP LOCKED``, then a lease in ``next_attempt_at``), so no two
    instances deliver one record, and the lease lets another instance take over a record
    whose claimer died. SQLite has one process per file (``single_instance``) and reads
    without claiming.
    """

    def __init__(self, storage: SqlStorage, lease_seconds: float | None = None) -> None:
        """``lease_seconds``: how long a claim lasts (default: the storage's)."""
        self._database = storage.database
        self._tables = storage.tables
        self._codec = storage.codec
        self._clock = storage.clock
        self.lease_seconds = storage.lease_seconds if lease_seconds is None else lease_seconds
        outbox = self._tables.outbox
        older = outbox.alias("older")
        blocked = exists().where(
            older.c.target == outbox.c.target,
            older.c.partition == outbox.c.partition,
            older.c.id < outbox.c.id,
        )
        in_list = _in_list if self._database.is_sqlite else _in_array
        # Built once: constructing these statements costs more than running them.
        due = (
            select(outbox)
            .where(
                outbox.c.next_attempt_at <= bindparam("now"),
                ~in_list(outbox.c.id, "skip"),
                ~blocked,
            )
            .order_by(outbox.c.id)
            .limit(bindparam("limit"))
        )
        self._due = due
        newer = outbox.alias("newer")
        followed = exists().where(
            newer.c.target == outbox.c.target,
            newer.c.partition == outbox.c.partition,
            newer.c.id > outbox.c.id,
        )
        # Each read also tells which records have newer ones waiting behind them: settling
        # the others needs no new read. (On PostgreSQL a newer record written by another
        # instance after the claim is found by the next poll.)
        self._due_followed = due.add_columns(followed.label("followed"))
        claimable = due.with_only_columns(outbox.c.id).with_for_update(skip_locked=True, of=outbox)
        self._claim = (
            update(outbox)
            .where(outbox.c.id.in_(claimable.scalar_subquery()))
            .values(next_attempt_at=bindparam("until"))
            .returning(*outbox.c, followed.label("followed"))
        )
        ids = in_list(outbox.c.id, "ids")
        self._claim_ids = update(outbox).where(ids).values(next_attempt_at=bindparam("until"))
        self._delete = delete(outbox).where(ids)
        self._retry = (
            update(outbox)
            .where(outbox.c.id == bindparam("record_id"))
            .values(
                attempts=bindparam("attempts"),
                next_attempt_at=bindparam("at"),
                last_error=bindparam("error"),
            )
        )
        self._one = select(outbox).where(outbox.c.id == bindparam("record_id"))
        self._delete_one = delete(outbox).where(outbox.c.id == bindparam("record_id"))
        self._add_dead = insert(self._tables.dead_letters)
        self._count = select(func.count()).select_from(outbox)
        self._next_attempt = select(func.min(outbox.c.next_attempt_at)).where(
            outbox.c.id.not_in(bindparam("skip", expanding=True))
        )
        #: A SQLite file and its WAL: an idle poll looks at them instead of the table.
        path = self._database.url.database if self._database.loop_engine is not None else None
        self._files = (path, f"{path}-wal") if path else None
        self._quiet: _Quiet | None = None

    async def due(
        self, now: float, limit: int, skip: Collection[int] = (), *, polled: bool = False
    ) -> list[OutboxRecord]:
        parameters: dict[str, Any] = {"now": now, "limit": limit, "skip": list(skip)}
        if self._database.is_sqlite:
            # An idle poll of an unchanged file costs no query (issue 12): other processes'
            # writes change the files, records waiting for a later attempt have a time.
            if polled and self._still_quiet(now):
                return []
            # Looked at before the read (a write after it shows next time), and only for a
            # poll: a read for a commit must not pay two stat calls.
            files = self._look_at_files() if polled else None
            async with self._database.connect() as connection:
                rows = (await connection.execute(self._due_followed, parameters)).all()
                self._quiet = None
                if not rows and files is not None:
                    wake_at = await connection.scalar(self._next_attempt, {"skip": list(skip)})
                    self._quiet = _Quiet(
                        files, math.inf if wake_at is None else wake_at, time.monotonic()
                    )
        else:
            parameters["until"] = now + self.lease_seconds
            # One statement claims (FOR UPDATE SKIP LOCKED and the lease together).
            async with one_statement(self._database) as connection:
                rows = sorted((await connection.execute(self._claim, parameters)).all(), key=_id)
        return [self._record(row) for row in rows]

    def _still_quiet(self, now: float) -> bool:
        quiet = self._quiet
        return (
            quiet is not None
            and now < quiet.wake_at
            and time.monotonic() - quiet.since < QUIET_LOOK_SECONDS
            and self._look_at_files() == quiet.files
        )

    def _look_at_files(self) -> tuple[tuple[int, int, int] | None, ...] | None:
        if self._files is None:
            return None
        return tuple(_file_state(path) for path in self._files)

    @property
    def renew_interval(self) -> float | None:
        return None if self._database.is_sqlite else self.lease_seconds / 3

    async def release(self, records: Sequence[OutboxRecord]) -> None:
        """Give up the claims on records this instance will not deliver (it is stopping)."""
        await self._claim_until(records, self._clock.now())

    async def renew(self, records: Sequence[OutboxRecord]) -> None:
        """Extend the claims on records still in flight by a whole lease."""
        await self._claim_until(records, self._clock.now() + self.lease_seconds)

    async def _claim_until(self, records: Sequence[OutboxRecord], until: float) -> None:
        if self._database.is_sqlite or not records:
            return
        async with one_statement(self._database) as connection:
            await connection.execute(
                self._claim_ids, {"ids": [record.id for record in records], "until": until}
            )

    def _record(self, row: Any) -> OutboxRecord:
        record = OutboxRecord(
            id=row.id,
            target=row.target,
            envelope=None,
            message=None,
            partition=row.partition,
            attempts=row.attempts,
            followed=bool(row.followed) if "followed" in row._fields else None,
        )
        try:
            record.envelope = self._codec.decode_envelope(row.envelope.encode())
            record.message = self._codec.decode_body(record.envelope, row.body.encode())
        except PoisonMessage as error:
            record.poison = error.reason
        return record

    async def remove_delivered(self, records: Sequence[OutboxRecord]) -> None:
        async with one_statement(self._database) as connection:
            # Ids alone identify records: they are never reused (see messaging_tables).
            await connection.execute(self._delete, {"ids": [record.id for record in records]})

    async def retry_later(self, record: OutboxRecord, attempts: int, at: float, error: str) -> None:
        async with one_statement(self._database) as connection:
            await connection.execute(
                self._retry,
                {"record_id": record.id, "attempts": attempts, "at": at, "error": error[:2000]},
            )

    async def dead_letter(self, record: OutboxRecord, attempts: int, reason: str) -> None:
        async with write_transaction(self._database) as connection:
            row = (await connection.execute(self._one, {"record_id": record.id})).first()
            if row is None:
                return
            await connection.execute(
                self._add_dead,
                {
                    **message_fields(row),
                    "attempts": attempts,
                    "reason": reason,
                    "failed_at": self._clock.now(),
                },
            )
            await connection.execute(self._delete_one, {"record_id": row.id})

    async def pending(self) -> int:
        async with self._database.connect() as connection:
            count = await connection.scalar(self._count)
        return int(count or 0)


def _in_list(column: ColumnElement[int], name: str) -> ColumnElement[bool]:
    """``column IN (...)``, the list's values bound one by one (SQLite)."""
    return column.in_(bindparam(name, expanding=True))


def _in_array(column: ColumnElement[int], name: str) -> ColumnElement[bool]:
    """``column = ANY(array)`` (PostgreSQL): one text for lists of every length, so one
    prepared statement per connection, where ``IN`` lists cost a prepare round trip for
    each new length (the relay's lists vary with what is in flight)."""
    return column == any_(bindparam(name, type_=ARRAY(BigInteger)))


def _id(row: Any) -> int:
    return int(row.id)


def _file_state(path: str) -> tuple[int, int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)
