"""A PostgreSQL that refuses new connections (its ``max_connections``, a role's limit, a
restart) makes work wait and retry, never fail as a bug: a unit of work that cannot connect
is ``Unavailable`` (a 503 at the edge, a retry on a queue), not a ``DBAPIError`` (a 500)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from adapters.sqlalchemy.database import Database
from kernel.errors import Unavailable
from kernel.messages import Envelope
from tests.integration.test_sqlite_loop_connection import storage_of

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

#: A login allowed one connection at a time: the second is refused as a full server
#: refuses one (SQLSTATE 53300, "too many connections").
ROLE = "cleave_one_connection"


async def test_a_refused_connection_is_unavailable_not_an_error(postgres_url: str) -> None:
    admin = Database(postgres_url)
    try:
        async with admin.engine.begin() as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": ROLE}
            )
            if not exists:
                await connection.execute(text(f"CREATE ROLE {ROLE} LOGIN CONNECTION LIMIT 1"))
    finally:
        await admin.dispose()
    limited = Database(
        make_url(postgres_url)
        .set(username=ROLE, password=None)
        .render_as_string(hide_password=False)
    )
    storage = storage_of(limited)
    holder = storage.unit_of_work(Envelope(message_id="m-1", name="t", version=1))
    try:
        await (await holder.connection()).execute(text("SELECT 1"))
        refused = storage.unit_of_work(Envelope(message_id="m-2", name="t", version=1))
        with pytest.raises(Unavailable, match="refuses connections"):
            await refused.connection()
        await holder.rollback()
        # Once a connection is free again the work goes through.
        again = storage.unit_of_work(Envelope(message_id="m-3", name="t", version=1))
        assert await (await again.connection()).scalar(text("SELECT 2")) == 2
        await again.rollback()
    finally:
        await holder.rollback()
        await limited.dispose()
