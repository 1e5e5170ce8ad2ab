"""SQL storage for one module: its unit of work (with inbox and outbox) and its outbox store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import MessagingTables, message_fields, messaging_tables
from kernel.clock import Clock
from kernel.codec import Codec
from kernel.errors import ConcurrencyConflict, DuplicateDelivery, PoisonMessage, Unavailable
from kernel.messages import Envelope
from kernel.registry import Registry
from kernel.relay import OutboxRecord
from kernel.unit_of_work import UnitOfWork, fan_out

#: SQLSTATEs of PostgreSQL that mean "you lost a race; try again".
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_transient(error: BaseException) -> bool:
    """Whether a database error means a lost race (deadlock, lock timeout), not a bug."""
    if not isinstance(error, DBAPIError):
        return False
    if "database is locked" in str(error.orig):
        return True
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


@asynccontextmanager
async def write_transaction(database: Database) -> AsyncIterator[AsyncConnection]:
    """A short writing transaction outside any unit of work (relay bookkeeping, tools)."""
    # Connection first, writer gate second: the same order as units of work, so that the
    # gate's holder never waits for a connection held by someone waiting for the gate.
    async with database.engine.connect() as connection:
        writer = database.writer
        if writer is not None:
            await writer.acquire()
        try:
            async with connection.begin():
                yield connection
        finally:
            if writer is not None:
                writer.release()


class _Statements:
    """The unit of work's own statements, built once (building one costs more than running
    it on SQLite)."""

    def __init__(self, tables: MessagingTables) -> None:
        inbox = tables.inbox
        self.seen = select(inbox.c.handler).where(
            inbox.c.handler == bindparam("handler"),
            inbox.c.message_id == bindparam("message_id"),
        )
        self.remember = insert(inbox)
        self.record = insert(tables.outbox)
        timers = tables.timers
        self.claim_timer = (
            update(timers)
            .where(timers.c.name == bindparam("timer"), timers.c.next_run_at <= bindparam("due"))
            .values(next_run_at=bindparam("next_run_at"))
        )
        self.timer = select(timers.c.name).where(timers.c.name == bindparam("timer"))
        self.add_timer = insert(timers)


class SqlStorage:
    """The ``Storage`` of a module that keeps its state in a SQL database."""

    def __init__(
        self,
        database: Database,
        module: str,
        registry: Registry,
        codec: Codec,
        clock: Clock,
        on_commit: Callable[[Collection[tuple[str, str | None]]], None] = lambda keys: None,
    ) -> None:
        self.database = database
        self.module = module
        self.tables: MessagingTables = messaging_tables(module)
        self.statements = _Statements(self.tables)
        self.registry = registry
        self.codec = codec
        self.clock = clock
        self.on_commit = on_commit

    def unit_of_work(self, envelope: Envelope) -> UnitOfWork:
        return SqlUnitOfWork(envelope, self)

    async def claim_tick(self, timer: str, every: float) -> bool:
        now = self.clock.now()
        statements = self.statements
        async with write_transaction(self.database) as connection:
            claimed = await connection.execute(
                statements.claim_timer,
                # A tick a little early still counts (sleeps drift): no period is skipped.
                {"timer": timer, "due": now + every / 10, "next_run_at": now + every},
            )
            if claimed.rowcount == 1:
                return True
            known = await connection.scalar(statements.timer, {"timer": timer})
            if known is not None:
                return False  # another instance fired it in this period
            try:
                async with connection.begin_nested():
                    await connection.execute(
                        statements.add_timer, {"name": timer, "next_run_at": now + every}
                    )
            except IntegrityError:
                return False  # another instance claimed the first period
            return True

    def outbox_rows(self, unit: UnitOfWork) -> list[dict[str, Any]]:
        now = self.clock.now()
        encode = self.codec.encode_body
        rows = []
        bodies: dict[int, str] = {}
        for delivery in fan_out(self.registry, unit.envelope, unit.emitted):
            key = id(delivery.message)
            body = bodies.get(key)
            if body is None:
                body = bodies[key] = encode(delivery.message).decode()
            rows.append(
                {
                    "message_id": delivery.envelope.message_id,
                    "target": delivery.target,
                    "name": delivery.envelope.name,
                    "partition": delivery.partition,
                    "envelope": self.codec.encode_envelope(delivery.envelope).decode(),
                    "body": body,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
        return rows


class GuardedConnection:
    """An ``AsyncConnection`` that passes the SQLite writer gate before its first write."""

    __slots__ = ("_connection", "_unit")

    def __init__(self, connection: AsyncConnection, unit: SqlUnitOfWork) -> None:
        self._connection = connection
        self._unit = unit

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(statement, "is_dml", False):
            await self._unit.writing()
        return await self._connection.execute(statement, *args, **kwargs)

    async def scalar(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(statement, "is_dml", False):
            await self._unit.writing()
        return await self._connection.scalar(statement, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class SqlUnitOfWork(UnitOfWork):
    """A transaction on the module's database, opened on first use."""

    __slots__ = ("_connection", "_gate", "_guarded", "_handled", "_storage")

    def __init__(self, envelope: Envelope, storage: SqlStorage) -> None:
        super().__init__(envelope)
        self._storage = storage
        self._connection: AsyncConnection | None = None
        self._guarded: GuardedConnection | None = None
        self._handled: str | None = None
        self._gate = False

    async def connection(self) -> GuardedConnection:
        if self._guarded is None:
            try:
                connection = await self._storage.database.engine.connect()
            except PoolTimeout as error:
                raise Unavailable("the database has no free connection; try again") from error
            try:
                await connection.begin()
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
            self._guarded = GuardedConnection(connection, self)
        return self._guarded

    async def writing(self) -> None:
        """Called before the first write: on SQLite, wait for this process's writer gate."""
        writer = self._storage.database.writer
        if writer is not None and not self._gate:
            await writer.acquire()
            self._gate = True

    async def exclusive(self) -> None:
        # Connection first, then the gate: the order every writer follows.
        await self.connection()
        await self.writing()

    async def handled(self, handler: str) -> bool:
        connection = await self.connection()
        found = await connection.execute(
            self._storage.statements.seen,
            {"handler": handler, "message_id": self.envelope.message_id},
        )
        return found.first() is not None

    def mark_handled(self, handler: str) -> None:
        self._handled = handler

    async def commit(self) -> None:
        if self._connection is None and not self.emitted and self._handled is None:
            return  # the handler touched nothing durable
        storage = self._storage
        rows: list[dict[str, Any]] = []
        try:
            connection = await self.connection()
            if self._handled is not None:
                try:
                    await connection.execute(
                        storage.statements.remember,
                        {
                            "handler": self._handled,
                            "message_id": self.envelope.message_id,
                            "handled_at": storage.clock.now(),
                        },
                    )
                except IntegrityError as error:
                    # A concurrent delivery of the same message won the race.
                    raise DuplicateDelivery(self.envelope.message_id) from error
            if self.emitted:
                rows = storage.outbox_rows(self)
                if rows:
                    await connection.execute(storage.statements.record, rows)
            await connection.commit()
        except DBAPIError as error:
            if is_transient(error):
                raise ConcurrencyConflict(f"{self.envelope.name}: {error.orig}") from error
            raise
        finally:
            await self._close()
        if rows:
            storage.on_commit({(row["target"], row["partition"]) for row in rows})

    async def rollback(self) -> None:
        if self._connection is not None:
            try:
                await self._connection.rollback()
            finally:
                await self._close()

    async def _close(self) -> None:
        try:
            if self._connection is not None:
                connection, self._connection, self._guarded = self._connection, None, None
                await connection.close()
        finally:
            if self._gate:
                self._gate = False
                writer = self._storage.database.writer
                assert writer is not None
                writer.release()

    def transient(self, error: BaseException) -> bool:
        return isinstance(error, ConcurrencyConflict) or is_transient(error)


class SqlOutboxStore:
    """The ``OutboxStore`` over a module's outbox and dead-letter tables.

    On PostgreSQL several instances of a module may share the outbox: reading records claims
    them (``FOR UPDATE SKIP LOCKED``, then a lease in ``next_attempt_at``), so no two
    instances deliver one record, and the lease lets another instance take over a record
    whose claimer died. SQLite has one process per file (``single_instance``) and reads
    without claiming.
    """

    def __init__(self, storage: SqlStorage, lease_seconds: float = 30.0) -> None:
        self._database = storage.database
        self._engine = storage.database.engine
        self._tables = storage.tables
        self._codec = storage.codec
        self._clock = storage.clock
        self.lease_seconds = lease_seconds
        outbox = self._tables.outbox
        older = outbox.alias("older")
        blocked = exists().where(
            older.c.target == outbox.c.target,
            older.c.partition == outbox.c.partition,
            older.c.id < outbox.c.id,
        )
        # Built once: constructing these statements costs more than running them.
        due = (
            select(outbox)
            .where(
                outbox.c.next_attempt_at <= bindparam("now"),
                outbox.c.id.not_in(bindparam("skip", expanding=True)),
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
        # The only reader (SQLite) also learns which records have newer ones waiting behind
        # them: settling the others needs no new read.
        self._due_followed = due.add_columns(followed.label("followed"))
        claimable = due.with_only_columns(outbox.c.id).with_for_update(skip_locked=True, of=outbox)
        self._claim = (
            update(outbox)
            .where(outbox.c.id.in_(claimable.scalar_subquery()))
            .values(next_attempt_at=bindparam("until"))
            .returning(*outbox.c)
        )
        ids = outbox.c.id.in_(bindparam("ids", expanding=True))
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

    async def due(self, now: float, limit: int, skip: Collection[int] = ()) -> list[OutboxRecord]:
        parameters: dict[str, Any] = {"now": now, "limit": limit, "skip": list(skip)}
        if self._database.is_sqlite:
            async with self._engine.connect() as connection:
                rows = (await connection.execute(self._due_followed, parameters)).all()
        else:
            parameters["until"] = now + self.lease_seconds
            async with self._engine.begin() as connection:
                rows = sorted((await connection.execute(self._claim, parameters)).all(), key=_id)
        return [self._record(row) for row in rows]

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
        async with write_transaction(self._database) as connection:
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

    async def delivered(self, records: Sequence[OutboxRecord]) -> None:
        async with write_transaction(self._database) as connection:
            # Ids alone identify records: they are never reused (see messaging_tables).
            await connection.execute(self._delete, {"ids": [record.id for record in records]})

    async def retry_later(self, record: OutboxRecord, attempts: int, at: float, error: str) -> None:
        async with write_transaction(self._database) as connection:
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
                    "failed_at": time.time(),
                },
            )
            await connection.execute(self._delete_one, {"record_id": row.id})

    async def pending(self) -> int:
        async with self._engine.connect() as connection:
            count = await connection.scalar(self._count)
        return int(count or 0)


def _id(row: Any) -> int:
    return int(row.id)
