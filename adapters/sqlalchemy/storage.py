"""SQL storage for one module: its unit of work, with the inbox and the outbox rows it writes
in the same transaction (the outbox store the relay reads is in ``outbox.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ARRAY, BigInteger, bindparam, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.held_writes import HeldWrite
from adapters.sqlalchemy.loop_connection import LoopConnection
from adapters.sqlalchemy.messaging_tables import MessagingTables, messaging_tables
from adapters.sqlalchemy.pg_connection import PgConnection
from kernel.clock import Clock
from kernel.codec import Codec
from kernel.errors import ConcurrencyConflict, DuplicateDelivery, Unavailable
from kernel.messages import Envelope
from kernel.outbox import OutboxRecord
from kernel.registry import Registry
from kernel.relay import Relay
from kernel.routing import PendingDelivery, fan_out
from kernel.unit_of_work import UnitOfWork

#: What the storage talks to: a ``LoopConnection`` on an inline SQLite file (no greenlet
#: switch per call), a ``PgConnection`` on PostgreSQL (hot statements on asyncpg),
#: SQLAlchemy's ``AsyncConnection`` elsewhere.
SqlConnection = AsyncConnection | LoopConnection | PgConnection

#: SQLSTATEs of PostgreSQL that mean "you lost a race; try again".
_RETRYABLE_SQLSTATES = {"40001", "40P01"}


def is_transient(error: BaseException) -> bool:
    """Whether a database error means a lost race (deadlock, lock timeout), not a bug."""
    if not isinstance(error, DBAPIError):
        return False
    if "database is locked" in str(error.orig):
        return True
    return getattr(error.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def lost_connection(error: BaseException) -> bool:
    """Whether a database error means the connection under it is gone (and given up)."""
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


@asynccontextmanager
async def write_transaction(database: Database) -> AsyncIterator[SqlConnection]:
    """A short writing transaction outside any unit of work (relay bookkeeping, tools)."""
    # Connection first, writer gate second: the same order as units of work, so that the
    # gate's holder never waits for a connection held by someone waiting for the gate.
    async with database.connect() as connection:
        writer = database.writer
        if writer is not None:
            await writer.acquire()
        try:
            async with connection.begin():
                yield connection
        finally:
            if writer is not None:
                writer.release()


@asynccontextmanager
async def one_statement(database: Database) -> AsyncIterator[SqlConnection]:
    """A connection for work that is one writing statement, atomic on its own.

    On PostgreSQL it runs without a transaction around it: BEGIN and COMMIT are two round
    trips of three, and the relay's claims and removals are each one statement (issue 12).
    On SQLite, where the writer gate orders writers, it is a ``write_transaction``.
    """
    if database.is_sqlite:
        async with write_transaction(database) as connection:
            yield connection
    else:
        async with database.connect(autocommit=True) as connection:
            yield connection


#: The columns a unit of work writes into its outbox rows.
OUTBOX_COLUMNS = (
    "message_id",
    "target",
    "name",
    "partition",
    "envelope",
    "body",
    "attempts",
    "next_attempt_at",
    "created_at",
)


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
        #: PostgreSQL: check and record in one statement (see ``SqlUnitOfWork.handled``).
        self.check_in = pg_insert(inbox).on_conflict_do_nothing()
        outbox = tables.outbox
        self.record = insert(outbox)
        # Records handed to the relay as they commit (``Relay.offer``) come back with their
        # id and the newest older record of their (target, partition) still in the outbox.
        # (Written out: SQLAlchemy does not correlate a subquery of RETURNING with the row.)
        table = outbox.name
        behind = literal_column(
            f"(SELECT max(older.id) FROM {table} AS older WHERE older.target = {table}.target"
            f" AND older.partition = {table}.partition AND older.id < {table}.id)",
            BigInteger,
        ).label("behind")
        handed = (outbox.c.id, outbox.c.message_id, outbox.c.target, behind)
        #: SQLite: one row (no round trip to save, and ``executemany`` returns nothing).
        self.record_one = insert(outbox).returning(*handed)
        #: PostgreSQL: every row in one statement, one array per column.
        self.record_all = (
            insert(outbox)
            .from_select(
                OUTBOX_COLUMNS,
                select(
                    *(
                        func.unnest(bindparam(name, type_=ARRAY(outbox.c[name].type)))
                        for name in OUTBOX_COLUMNS
                    )
                ),
            )
            .returning(*handed)
        )
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
        lease_seconds: float = 30.0,
    ) -> None:
        self.database = database
        self.module = module
        self.tables: MessagingTables = messaging_tables(module)
        self.statements = _Statements(self.tables)
        self.registry = registry
        self.codec = codec
        self.clock = clock
        self.on_commit = on_commit
        #: The relay of this module's outbox, given what this process commits (``offer``).
        self.relay: Relay | None = None
        #: How long a relay's claims last (PostgreSQL): those of its reads (``SqlOutboxStore``)
        #: and those of the records handed to it.
        self.lease_seconds = lease_seconds

    def unit_of_work(
        self, envelope: Envelope, rerun: bool = False, reads_only: bool = False
    ) -> UnitOfWork:
        return SqlUnitOfWork(envelope, self, rerun, reads_only)

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

    def outbox_rows(self, deliveries: list[PendingDelivery]) -> list[dict[str, Any]]:
        now = self.clock.now()
        encode = self.codec.encode_body
        rows = []
        bodies: dict[int, str] = {}
        for delivery in deliveries:
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

    async def record_handed(
        self, connection: Any, rows: list[dict[str, Any]], deliveries: list[PendingDelivery]
    ) -> list[OutboxRecord]:
        """Write ``rows`` claimed for this process's relay (due only when the claim ends, on
        PostgreSQL), and return them as the relay's records, for ``Relay.offer``."""
        statements = self.statements
        if self.database.is_sqlite:
            written = [(await connection.execute(statements.record_one, row)).one() for row in rows]
        else:
            until = rows[0]["next_attempt_at"] + self.lease_seconds
            columns = {name: [row[name] for row in rows] for name in OUTBOX_COLUMNS}
            columns["next_attempt_at"] = [until] * len(rows)
            # With the checked writes held back, if any: one round trip for them all.
            written = (await connection.execute_with_held(statements.record_all, columns)).all()
        ids = {(row.message_id, row.target): row for row in written}
        records = []
        #: The last record of each (target, partition) in this batch: the statement's reads
        #: do not see the rows it writes.
        last: dict[tuple[str, str], int] = {}
        for delivery in deliveries:
            row = ids[(delivery.envelope.message_id, delivery.target)]
            behind = row.behind
            if delivery.partition is not None:
                key = (delivery.target, delivery.partition)
                behind = last.get(key, behind)
                last[key] = row.id
            records.append(
                OutboxRecord(
                    id=row.id,
                    target=delivery.target,
                    envelope=delivery.envelope,
                    message=delivery.message,
                    partition=delivery.partition,
                    behind=behind,
                )
            )
        return records


class GuardedConnection:
    """A ``SqlConnection`` that passes the SQLite writer gate before its first write."""

    __slots__ = ("_connection", "_unit")

    def __init__(self, connection: SqlConnection, unit: SqlUnitOfWork) -> None:
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

    async def hold(
        self,
        statement: Any,
        parameters: Mapping[str, Any],
        *,
        rows: int,
        what: str,
        exists: str | None,
    ) -> None:
        """``kernel.write_checked``: held to go with the outbox's records where the
        connection can hold it (PostgreSQL, ``held_writes``), else sent and checked now."""
        await self._unit.writing()
        held = HeldWrite(statement, parameters, rows=rows, what=what, exists=exists)
        connection = self._connection
        if not (isinstance(connection, PgConnection) and connection.hold(held)):
            await held.run(connection)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class SqlUnitOfWork(UnitOfWork):
    """A transaction on the module's database, opened on first use."""

    __slots__ = (
        "_alone",
        "_connection",
        "_gate",
        "_guarded",
        "_handled",
        "_reads_only",
        "_recorded",
        "_storage",
    )

    def __init__(
        self,
        envelope: Envelope,
        storage: SqlStorage,
        alone: bool = False,
        reads_only: bool = False,
    ) -> None:
        super().__init__(envelope)
        self._storage = storage
        self._connection: SqlConnection | None = None
        self._guarded: GuardedConnection | None = None
        self._handled: str | None = None
        #: The handler whose inbox row this transaction already wrote (PostgreSQL).
        self._recorded: str | None = None
        self._gate = False
        #: A rerun after a lost race: it takes the writer gate with its connection, reads
        #: included, so that no other writer of this process can make it lose again.
        self._alone = alone
        #: A query's unit. On PostgreSQL it runs without a transaction: under READ COMMITTED
        #: each statement takes its own snapshot inside one as well, so BEGIN and COMMIT
        #: would be two round trips that change nothing (issue 12). SQLite keeps its read
        #: transaction, which is one snapshot for all of the unit's reads and costs no trip.
        self._reads_only = reads_only

    async def connection(self) -> GuardedConnection:
        if self._guarded is None:
            database = self._storage.database
            try:
                connection = await database.connect(
                    autocommit=self._reads_only and not database.is_sqlite
                )
            except PoolTimeout as error:
                raise Unavailable("the database has no free connection; try again") from error
            except (DBAPIError, OSError) as error:
                # Refused or unreachable (PostgreSQL's "too many clients", a restart): the
                # work can run later, so it is a 503 at the edge and a retry on a queue.
                raise Unavailable("the database refuses connections; try again") from error
            try:
                await connection.begin()
            except BaseException:
                await connection.close()
                raise
            self._connection = connection
            self._guarded = GuardedConnection(connection, self)
            if self._alone and not self._reads_only:
                # Connection first, then the gate: the order every writer follows.
                await self.writing()
        return self._guarded

    async def writing(self) -> None:
        """Called before the first write: on SQLite, wait for this process's writer gate."""
        if self._reads_only:
            # A bug in the module, not the caller's fault: a 500, whatever the storage.
            raise RuntimeError(
                f"{self.envelope.name} is a query: its handler must not write (a command does)"
            )
        writer = self._storage.database.writer
        if writer is not None and not self._gate:
            await writer.acquire()
            self._gate = True

    async def handled(self, handler: str) -> bool:
        connection = await self.connection()
        storage = self._storage
        key: dict[str, Any] = {"handler": handler, "message_id": self.envelope.message_id}
        if storage.database.is_sqlite:
            found = await connection.execute(storage.statements.seen, key)
            return found.first() is not None
        # PostgreSQL records the message as it checks: one statement instead of two per
        # handled message (issue 12). The row is this transaction's until it commits (a
        # rollback takes it away); a concurrent delivery of the same message waits for
        # that, then finds the row, or writes its own if this one rolled back.
        key["handled_at"] = storage.clock.now()
        checked_in = await connection.execute(storage.statements.check_in, key)
        if checked_in.rowcount == 0:
            return True
        self._recorded = handler
        return False

    def mark_handled(self, handler: str) -> None:
        self._handled = handler

    async def commit(self) -> None:
        if self._connection is None and not self.emitted and self._handled is None:
            return  # the handler touched nothing durable
        storage = self._storage
        rows: list[dict[str, Any]] = []
        handed: list[OutboxRecord] = []
        relay = storage.relay if storage.relay is not None and storage.relay.taking else None
        try:
            connection = await self.connection()
            if self._handled is not None and self._handled != self._recorded:
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
                deliveries = fan_out(storage.registry, self.envelope, self.emitted)
                rows = storage.outbox_rows(deliveries)
                if rows and relay is not None:
                    handed = await storage.record_handed(connection, rows, deliveries)
                elif rows:
                    await connection.execute(storage.statements.record, rows)
            try:
                await connection.commit()
            except DBAPIError as error:
                if lost_connection(error):
                    # The COMMIT went out and no answer came back: it may have committed.
                    # Not run again here; the caller retries (a retry on a queue finds the
                    # inbox row if it did; a client retries with its idempotency key).
                    raise Unavailable(
                        f"{self.envelope.name}: the database connection was lost at commit; "
                        "whether it committed is unknown"
                    ) from error
                raise
            if handed:
                assert relay is not None
                # Before anything else runs: no read of the relay's may find them first.
                relay.offer(handed)
        except DBAPIError as error:
            if is_transient(error):
                raise ConcurrencyConflict(f"{self.envelope.name}: {error.orig}") from error
            raise
        finally:
            await self._close()
        if rows and not handed:
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
        # A connection lost before the commit lost the transaction with it: nothing was
        # written, so the unit runs again on a new connection (a restart of the database,
        # a session it ended) instead of failing.
        return (
            isinstance(error, ConcurrencyConflict) or is_transient(error) or lost_connection(error)
        )
