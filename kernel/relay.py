"""The relay: delivers what units of work wrote to an outbox, after they committed.

One relay per outbox. It delivers the oldest pending record of each (target, partition) pair,
so deliveries that share a partition key arrive in the order they were emitted, while
unrelated ones proceed concurrently. A ``PoisonMessage`` or a typed domain error (``NotFound``,
``Rejected``...) goes to the dead letters at once; anything else is retried with backoff
(``RetryPolicy``), then dead-lettered, except a ``retry_forever`` message (a compensation),
retried until it succeeds. A record leaves the outbox only when delivered or dead-lettered.

Records this process commits are handed to the relay as they commit (``offer``), claimed for
it, so that it does not read back what it was just given; its reads are for the rest (records
due later, records other processes wrote, records whose order it cannot vouch for).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection

import msgspec

from kernel.clock import Clock
from kernel.errors import CleaveError, PoisonMessage
from kernel.outbox import Deliver, OutboxRecord, OutboxStore, RetryPolicy

log = logging.getLogger("cleave.relay")


class Relay:
    """Moves records from one outbox to their handlers, with retries and dead letters."""

    def __init__(
        self,
        name: str,
        store: OutboxStore,
        deliver: Deliver,
        clock: Clock,
        policy: RetryPolicy | None = None,
        concurrency: int = 64,
        poll_interval: float = 0.5,
        settle_linger: float = 0.05,
    ) -> None:
        self.name = name
        self._store = store
        self._deliver = deliver
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        #: How long delivered records may wait to be removed with the next ones; a crash in
        #: between delivers them again, and the inbox drops the repeats.
        self._settle_linger = settle_linger
        self._wake = asyncio.Event()
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._in_flight_records: dict[int, OutboxRecord] = {}
        #: Delivered records waiting to be removed in the next batch, and since when.
        self._delivered: list[OutboxRecord] = []
        self._delivered_since = 0.0
        #: Whether a record committed or waiting behind the batch needs it removed first.
        self._unblock = False
        #: Records settled while a read was under way: that read must not deliver them again.
        self._settled_during_read: set[int] = set()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._renewed_at = 0.0
        #: Whether the next turn reads the outbox: something was committed, a settled record
        #: had records waiting behind it, the last read was full, or a poll is due.
        self._read_needed = True
        #: Whether that read is only the poll (nothing in this process asked for it).
        self._polled = False
        #: When the outbox was last read: a poll is due ``poll_interval`` after it, however
        #: often the loop turns for other work (removals), so that records due later
        #: (retries) and records another instance wrote are never left waiting.
        self._read_at = time.monotonic()
        #: Records taken that newer records of their (target, partition) wait behind: as the
        #: store said when it gave them, or committed here since. A newer record another
        #: instance commits behind one in flight here is found by the next poll (a read
        #: after every delivery, for that case alone, cost a query per record; issue 12).
        self._followed: set[int] = set()
        #: Offered records not started yet: no room, or an older record of their (target,
        #: partition) is in flight or held here. In id order; claimed as in-flight ones are.
        self._held: list[OutboxRecord] = []
        #: Offered records whose order this relay cannot vouch for: given back to the reads.
        self._released: list[OutboxRecord] = []
        #: Delivered records being removed right now (they no longer hold anything back).
        self._removing: list[OutboxRecord] = []

    @property
    def taking(self) -> bool:
        """Whether records committed now may be handed to this relay (``offer``): it runs."""
        return self._loop_task is not None and not self._stopping

    def offer(self, records: Collection[OutboxRecord]) -> None:
        """Records this process just committed to the outbox, claimed for this relay: they
        are delivered without the read that would find them (issue 12).

        Each says which older record of its (target, partition) was still in the outbox
        (``behind``). One behind a record this relay holds (in flight, held, delivered)
        keeps its place behind it here; one behind a record it does not hold (due later,
        another process's) goes back to the outbox's reads, which keep the order.
        """
        taken = self._taken_ids()
        done = {record.id for record in (*self._delivered, *self._removing)}
        for record in sorted(records, key=_record_id):
            if record.id in taken:
                continue  # a read found it first (stores without claims)
            behind = record.behind
            if behind is None or behind in done or behind in taken:
                self._held.append(record)
                taken.add(record.id)
            else:
                self._released.append(record)
        self._wake.set()

    def _taken_ids(self) -> set[int]:
        """The records this relay has started or holds to start."""
        taken = set(self._in_flight_records)
        taken.update(record.id for record in self._held)
        return taken

    def _start_held(self) -> None:
        """Start the held records that have room and nothing of theirs left ahead here."""
        waiting: list[OutboxRecord] = []
        ahead = set(self._in_flight_records)
        for record in self._held:
            if record.behind in ahead or len(self._in_flight) >= self._concurrency:
                waiting.append(record)
                ahead.add(record.id)
                continue
            self._in_flight_records[record.id] = record
            self._in_flight[record.id] = asyncio.create_task(self._attempt(record))
            ahead.add(record.id)
        self._held = waiting

    def _release_behind(self, record_id: int) -> None:
        """``record_id`` stays in the outbox (a later attempt): what is held behind it, and
        behind those, goes back to the reads, which deliver it after that record."""
        stopped = {record_id}
        waiting = []
        for record in self._held:
            if record.behind in stopped:
                stopped.add(record.id)
                self._released.append(record)
            else:
                waiting.append(record)
        self._held = waiting

    async def _give_back_released(self) -> None:
        batch, self._released = self._released, []
        try:
            await self._store.release(batch)
        except Exception:
            # They stay claimed until their lease ends; a read then finds them.
            log.exception("relay %s: could not give back %d records", self.name, len(batch))
        # What held them back may be gone already: look now.
        self._read_needed, self._polled = True, False

    def notify(self, keys: Collection[tuple[str, str | None]] | None = None) -> None:
        """Something was committed to the outbox: look now rather than at the next poll.

        ``keys`` are the (target, partition) pairs of the committed records, if known; a new
        record of the pair of a record in flight is read once that one is settled.
        """
        for record_id, record in self._in_flight_records.items():
            if _waits_behind(record, keys):
                self._followed.add(record_id)
        if any(_waits_behind(record, keys) for record in self._delivered):
            self._unblock = True
        self._read_needed, self._polled = True, False
        self._wake.set()

    def start(self) -> None:
        """Start delivering in the background."""
        self._stopping = False
        # What it takes now was claimed as it was read or written: renewed a period later.
        self._renewed_at = self._clock.now()
        self._loop_task = asyncio.create_task(self._run(), name=f"relay:{self.name}")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking records; let deliveries in flight finish for ``grace`` seconds.

        What is not delivered by then stays in the outbox for the next start.
        """
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        if self._in_flight:
            records = dict(self._in_flight_records)
            tasks = {task: record_id for record_id, task in self._in_flight.items()}
            _, late = await asyncio.wait(list(tasks), timeout=grace)
            for task in late:
                task.cancel()
            if late:
                # Bounded too: a task that swallowed its cancellation must not hang a stop.
                await asyncio.wait(late, timeout=grace + 1)
                log.warning(
                    "relay %s: %d deliveries left in the outbox at stop", self.name, len(late)
                )
                try:
                    await self._store.release([records[tasks[task]] for task in late])
                except Exception:
                    log.exception("relay %s: could not release its claims", self.name)
        await self._settle_delivered()
        self._released.extend(self._held)
        self._held = []
        if self._released:
            await self._give_back_released()

    async def idle(self) -> bool:
        """True when nothing is in flight and nothing waits in the outbox."""
        return (
            not self._in_flight
            and not self._delivered
            and not self._held
            and await self._store.pending() == 0
        )

    @property
    def in_flight(self) -> int:
        """How many deliveries are under way."""
        return len(self._in_flight)

    def _settle_due(self) -> bool:
        """Whether the delivered records are removed now rather than with later ones."""
        return bool(self._delivered) and (
            self._unblock
            or self._stopping
            or len(self._delivered) >= self._concurrency
            or time.monotonic() - self._delivered_since >= self._settle_linger
        )

    async def _settle_delivered(self) -> None:
        # One write removes the whole batch (one per delivery cost a transaction each).
        self._unblock = False
        if not self._delivered:
            return
        batch, self._delivered = self._delivered, []
        self._removing = batch
        try:
            await self._store.remove_delivered(batch)
        except Exception:
            # They stay in the outbox and are delivered again; the inbox drops the repeats.
            log.exception("relay %s: could not remove %d delivered records", self.name, len(batch))
        finally:
            self._removing = []

    async def _renew_claims(self) -> None:
        # A slow delivery outlives its claim: renew, or another instance takes the record too.
        interval = self._store.renew_interval
        if interval is None or not (self._in_flight_records or self._held):
            return
        now = self._clock.now()
        if now - self._renewed_at < interval:
            return
        self._renewed_at = now
        try:
            await self._store.renew([*self._in_flight_records.values(), *self._held])
        except Exception:
            log.exception("relay %s: could not renew its claims", self.name)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._settled_during_read.clear()
            if self._settle_due():
                await self._settle_delivered()
            await self._renew_claims()
            if self._released:
                await self._give_back_released()
            if self._held:
                self._start_held()
            if not self._read_needed and time.monotonic() - self._read_at >= self._poll_interval:
                # The poll: records due later (retries) or written by another process.
                self._read_needed = self._polled = True
            free = self._concurrency - len(self._in_flight)
            if free > 0 and self._read_needed:
                polled, self._read_needed, self._polled = self._polled, False, False
                self._read_at = time.monotonic()
                # Busy: in flight, or delivered and waiting for the next batch removal.
                busy = self._taken_ids()
                busy.update(record.id for record in self._delivered)
                try:
                    records = await self._store.due(self._clock.now(), free, busy, polled=polled)
                except Exception:
                    log.exception("relay %s: cannot read the outbox; trying again", self.name)
                    records = []
                if len(records) >= free:
                    self._read_needed = True  # a full read: more may be due
                stale = self._settled_during_read
                taken = self._taken_ids()
                for record in records:
                    if record.id in stale or record.id in taken:
                        continue  # settled, or offered, while the read was under way
                    if len(self._in_flight) >= self._concurrency:
                        self._read_needed = True
                        break
                    if record.followed is not False and record.partition is not None:
                        self._followed.add(record.id)
                    self._in_flight_records[record.id] = record
                    self._in_flight[record.id] = asyncio.create_task(self._attempt(record))
            if self._settle_due():
                continue
            if self._read_needed:
                # No room for what is due (all in flight): a settled delivery makes room.
                timeout = self._poll_interval
            else:
                timeout = max(0.0, self._read_at + self._poll_interval - time.monotonic())
            if self._delivered:
                linger = self._delivered_since + self._settle_linger - time.monotonic()
                timeout = min(timeout, max(0.0, linger))
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass  # the poll or the batch's removal is due: the loop's top sees which

    async def _attempt(self, record: OutboxRecord) -> None:
        gone = False
        try:
            gone = await self._attempt_once(record)
        except Exception:
            # The store itself failed (database gone): the record stays and is tried again.
            log.exception("relay %s: could not settle record %s", self.name, record.id)
        finally:
            del self._in_flight[record.id]
            del self._in_flight_records[record.id]
            self._settled_during_read.add(record.id)
            if self._held:
                if not gone:
                    self._release_behind(record.id)
                self._wake.set()  # what was held behind it, or for its room, may start
            if record.id in self._followed:
                # Newer records wait behind this one: remove it, then read again.
                self._followed.discard(record.id)
                self._unblock = True
                self._read_needed, self._polled = True, False
                self._wake.set()
            elif not self._in_flight:
                # Nothing else will wake the loop soon: let it time the batch's removal.
                self._wake.set()

    async def _attempt_once(self, record: OutboxRecord) -> bool:
        """Deliver ``record`` once; whether it left the outbox's order (delivered, or
        dead-lettered) rather than staying for a later attempt."""
        if record.poison is not None or record.envelope is None or record.message is None:
            await self._dead_letter(record, record.attempts, record.poison or "undecodable record")
            return True
        attempts = record.attempts + 1
        envelope = msgspec.structs.replace(record.envelope, attempt=attempts)
        try:
            await self._deliver(record.target, envelope, record.message)
        except PoisonMessage as error:
            await self._dead_letter(record, attempts, error.reason)
        except CleaveError as error:
            if not error.retryable:
                await self._dead_letter(record, attempts, f"{error.kind}: {error.detail} (final)")
            else:
                return await self._failed(record, attempts, f"{error.kind}: {error.detail}")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning(
                "relay %s: delivery of %s to %s failed (attempt %d): %r",
                self.name,
                envelope.name,
                record.target,
                attempts,
                error,
            )
            return await self._failed(record, attempts, f"{type(error).__name__}: {error}")
        else:
            if not self._delivered:
                self._delivered_since = time.monotonic()
            self._delivered.append(record)
        return True

    async def _failed(self, record: OutboxRecord, attempts: int, error: str) -> bool:
        """Retry ``record`` later or, out of attempts, dead-letter it; whether it left."""
        keep_trying = record.message is not None and type(record.message).retry_forever
        if keep_trying and attempts % self._policy.max_attempts == 0:
            log.warning(
                "relay %s: %s to %s still fails after %d attempts; it keeps trying: %s",
                self.name,
                record.envelope.name if record.envelope else "?",
                record.target,
                attempts,
                error,
            )
        if attempts >= self._policy.max_attempts and not keep_trying:
            await self._dead_letter(record, attempts, f"gave up after {attempts} attempts: {error}")
            return True
        at = self._clock.now() + self._policy.delay(attempts)
        await self._store.retry_later(record, attempts, at, error)
        return False

    async def _dead_letter(self, record: OutboxRecord, attempts: int, reason: str) -> None:
        log.error(
            "relay %s: dead letter for %s: %s",
            self.name,
            record.envelope.name if record.envelope else "?",
            reason,
        )
        await self._store.dead_letter(record, attempts, reason)


def _record_id(record: OutboxRecord) -> int:
    return record.id


def _waits_behind(record: OutboxRecord, keys: Collection[tuple[str, str | None]] | None) -> bool:
    """Whether a committed record of one of ``keys`` (None: any) would wait behind
    ``record``: deliveries of one (target, partition) keep their order."""
    return record.partition is not None and (
        keys is None or (record.target, record.partition) in keys
    )
