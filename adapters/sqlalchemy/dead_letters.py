"""What an operator does with dead letters: list, inspect, replay, purge.

A dead letter is a delivery that failed for good (a final domain error, a poison message, or
too many attempts). Retrying puts it back in its module's outbox with a fresh attempt count;
the relay of a running process (or of the next start) delivers it. The inbox of the target
still protects against a second effect if the message had in fact been handled.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import message_fields, messaging_tables
from adapters.sqlalchemy.storage import write_transaction


@dataclass(frozen=True)
class DeadLetterView:
    module: str
    id: int
    message_id: str
    name: str
    target: str
    attempts: int
    reason: str
    failed_at: float
    envelope: str
    body: str

    @property
    def ref(self) -> str:
        """How an operator names it: ``module:id``."""
        return f"{self.module}:{self.id}"


def parse_ref(ref: str) -> tuple[str, int]:
    module, _, number = ref.partition(":")
    if not module or not number.isdigit():
        raise ValueError(f"a dead letter is named module:id (like inventory:3), not {ref!r}")
    return module, int(number)


class DeadLetters:
    """The dead letters of ``modules`` in ``database``."""

    def __init__(self, database: Database, modules: Sequence[str]) -> None:
        self._database = database
        self._modules = list(modules)

    def _tables(self, module: str) -> Any:
        if module not in self._modules:
            raise ValueError(f"no module {module!r} here (known: {', '.join(self._modules)})")
        return messaging_tables(module)

    async def list(self, module: str | None = None) -> list[DeadLetterView]:
        found: list[DeadLetterView] = []
        for name in [module] if module else self._modules:
            table = self._tables(name).dead_letters
            async with self._database.engine.connect() as connection:
                rows = await connection.execute(select(table).order_by(table.c.id))
                found.extend(_view(name, row) for row in rows)
        return sorted(found, key=lambda letter: letter.failed_at)

    async def get(self, ref: str) -> DeadLetterView | None:
        module, number = parse_ref(ref)
        table = self._tables(module).dead_letters
        async with self._database.engine.connect() as connection:
            row = (await connection.execute(select(table).where(table.c.id == number))).first()
        return None if row is None else _view(module, row)

    async def retry(self, ref: str) -> bool:
        """Put the dead letter back in its outbox; False if there is no such dead letter."""
        module, number = parse_ref(ref)
        tables = self._tables(module)
        dead, outbox = tables.dead_letters, tables.outbox
        async with write_transaction(self._database) as connection:
            row = (await connection.execute(select(dead).where(dead.c.id == number))).first()
            if row is None:
                return False
            now = time.time()
            await connection.execute(
                insert(outbox).values(
                    **message_fields(row),
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                    last_error=f"replayed from dead letters: {row.reason}"[:2000],
                )
            )
            await connection.execute(delete(dead).where(dead.c.id == number))
        return True

    async def purge(self, ref: str | None = None) -> int:
        """Delete one dead letter, or all of them; returns how many went."""
        removed = 0
        if ref is not None:
            module, number = parse_ref(ref)
            dead = self._tables(module).dead_letters
            async with write_transaction(self._database) as connection:
                result = await connection.execute(delete(dead).where(dead.c.id == number))
                return int(result.rowcount or 0)
        for module in self._modules:
            dead = self._tables(module).dead_letters
            async with write_transaction(self._database) as connection:
                count = await connection.scalar(select(func.count()).select_from(dead))
                await connection.execute(delete(dead))
                removed += int(count or 0)
        return removed


def _view(module: str, row: Any) -> DeadLetterView:
    return DeadLetterView(
        module=module,
        id=row.id,
        message_id=row.message_id,
        name=row.name,
        target=row.target,
        attempts=row.attempts,
        reason=row.reason,
        failed_at=row.failed_at,
        envelope=row.envelope,
        body=row.body,
    )
