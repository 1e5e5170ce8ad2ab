"""Schema migrations with alembic: one history per module, each in the module's own database.

A module's history lives in its package (``modules/ordering/migrations/``) and tracks the
module's own tables in ``<module>_alembic_version``. The outbox, inbox, dead-letter and timer
tables every module gets are the adapter's: their history is written once
(``adapters/sqlalchemy/messaging_migrations/``) and applied to each module's prefixed tables,
tracked in ``<module>_messaging_alembic_version``. So a module migrates wherever its database
is (the monolith's one file, or its own service's database), and a team that adds a module
writes migrations for its own tables only.

Alembic runs on the connection of the async engine (``run_sync``), inside one transaction
that holds the same advisory lock as table creation did: instances of a service that start
together migrate once.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, text

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.messaging_tables import messaging_tables

log = logging.getLogger("cleave.migrations")

#: The alembic environment every history runs in (``env.py`` and the revision template).
ENVIRONMENT = Path(__file__).with_name("alembic_environment")
#: The history of the messaging tables, applied to each module's own.
MESSAGING_VERSIONS = Path(__file__).with_name("messaging_migrations")

#: Held while a database's schema changes: instances of a module that start together
#: would otherwise run the same CREATE twice (PostgreSQL refuses the second).
_SCHEMA_LOCK = 7411000001

#: How an empty database gets its tables: ``create`` (``create_all`` and a stamp of the
#: head, what alembic recommends for a fresh database; a test proves it builds what the
#: migrations build) or ``migrate`` (every revision in turn).
FromEmpty = Literal["create", "migrate"]


@dataclass(frozen=True)
class History:
    """One line of revisions in one database: a module's tables, or its messaging tables."""

    module: str
    kind: Literal["tables", "messaging"]
    versions: Path
    metadata: MetaData = field(compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.module if self.kind == "tables" else f"{self.module} messaging"

    @property
    def version_table(self) -> str:
        prefix = self.module if self.kind == "tables" else f"{self.module}_messaging"
        return f"{prefix}_alembic_version"

    def owns(self, name: str | None, type_: str, *_: Any) -> bool:
        """Whether autogenerate and comparisons should look at ``name``: this history's
        tables only (the database holds other modules' and other histories' too)."""
        if type_ == "table":
            return name in self.metadata.tables
        return True

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(ENVIRONMENT))
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", str(self.versions))
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        # A written revision is formatted as the rest of the code.
        for option, value in {
            "hooks": "ruff",
            "ruff.type": "module",
            "ruff.module": "ruff",
            "ruff.options": "format REVISION_SCRIPT_FILENAME",
        }.items():
            config.set_section_option("post_write_hooks", option, value)
        config.attributes["history"] = self
        config.attributes["connection"] = connection
        return config

    def script(self) -> ScriptDirectory:
        return _script(self.versions)

    def head(self) -> str | None:
        return self.script().get_current_head()

    def base(self) -> str | None:
        bases = self.script().get_bases()
        return bases[0] if bases else None


def module_histories(name: str, package: str, tables: MetaData | None) -> list[History]:
    """The histories of one module: its tables' (from ``<package>/migrations/versions``),
    when it has tables, then its messaging tables'."""
    if tables is None:
        return []
    location = Path(importlib.import_module(package).__path__[0]) / "migrations" / "versions"
    return [
        History(name, "tables", location, tables),
        History(name, "messaging", MESSAGING_VERSIONS, messaging_tables(name).metadata),
    ]


def messaging_module() -> str:
    """In a messaging revision: the module whose messaging tables it changes."""
    from alembic import op

    config = op.get_context().config
    assert config is not None
    history: History = config.attributes["history"]
    return history.module


def run_environment(context: Any) -> None:
    """The body of ``env.py``: run the history on the connection it was given."""
    history: History = context.config.attributes["history"]
    connection: Connection | None = context.config.attributes["connection"]
    if connection is None:
        raise RuntimeError("cleave migrations run through cleave db, on a live connection")
    context.configure(
        connection=connection,
        target_metadata=history.metadata,
        version_table=history.version_table,
        include_name=history.owns,
        # SQLite alters a table by copying it: later revisions use batch operations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


@dataclass(frozen=True)
class Position:
    """Where one history stands in one database."""

    history: History
    current: str | None
    head: str | None

    @property
    def behind(self) -> bool:
        return self.current != self.head

    def describe(self) -> str:
        if not self.behind:
            return f"{self.history.name}: {self.current} (head)"
        return f"{self.history.name}: {self.current or 'empty'} (behind: head is {self.head})"


async def upgrade(
    database: Database,
    histories: Sequence[History],
    *,
    revisions: Mapping[str, str] | None = None,
    from_empty: FromEmpty = "create",
) -> None:
    """Bring every history in ``database`` to its head, or to the revision ``revisions``
    gives for its name (one transaction, under a lock)."""
    async with database.engine.begin() as connection:
        if not database.is_sqlite:
            await connection.execute(text(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})"))
            if database.schema is not None:
                await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        await connection.run_sync(_upgrade_all, histories, revisions or {}, from_empty)


async def positions(database: Database, histories: Iterable[History]) -> list[Position]:
    """Where each history stands in ``database`` (its current revision and its head)."""
    histories = list(histories)
    async with database.engine.connect() as connection:
        currents = await connection.run_sync(
            lambda sync: [_current(sync, history) for history in histories]
        )
    return [Position(h, current, h.head()) for h, current in zip(histories, currents, strict=True)]


async def differences(database: Database, histories: Iterable[History]) -> list[Any]:
    """What the tables in ``database`` lack or have beyond the models (alembic's
    autogenerate comparison): empty when the migrations build exactly the models."""
    found: list[Any] = []
    async with database.engine.connect() as connection:
        for history in histories:
            found.extend(await connection.run_sync(_compare, history))
    return found


def _upgrade_all(
    connection: Connection,
    histories: Sequence[History],
    revisions: Mapping[str, str],
    empty: FromEmpty,
) -> None:
    # One look at the tables for all histories: each question is a round trip.
    tables = set(inspect(connection).get_table_names())
    for history in histories:
        _upgrade(connection, history, tables, revisions.get(history.name, "head"), empty)


def _upgrade(
    connection: Connection, history: History, tables: set[str], revision: str, empty: FromEmpty
) -> None:
    script = history.script()
    if script.get_current_head() is None:
        # A module without migrations yet (a new one): its tables come from its models,
        # and nothing will alter them until it has a first revision.
        log.warning("%s has no migrations: creating its tables from the models", history.name)
        history.metadata.create_all(connection)
        return
    if history.version_table not in tables:
        if tables & set(history.metadata.tables):
            # Tables from before migrations (created at start-up): they are the first
            # revision's, so record that and migrate from there.
            base = history.base()
            log.warning(
                "%s: tables without a migration record; marking them as revision %s",
                history.name,
                base,
            )
            _run(connection, history, lambda rev, _: script._stamp_revs(base, rev), base)
        elif empty == "create" and revision == "head":
            history.metadata.create_all(connection, checkfirst=False)
            _run(connection, history, lambda rev, _: script._stamp_revs("head", rev), "head")
            return
    _run(connection, history, lambda rev, _: script._upgrade_revs(revision, rev), revision)


def _run(connection: Connection, history: History, steps: Any, destination: str | None) -> None:
    """Run ``steps`` (what alembic's upgrade and stamp commands run) in the environment,
    with the history's scripts loaded once per process: ``alembic.command`` would compile
    every revision file again for each history of each database (60 ms a test database)."""
    config = history.config(connection)
    with EnvironmentContext(
        config, history.script(), fn=steps, destination_rev=destination
    ) as environment:
        run_environment(environment)


@functools.cache
def _script(versions: Path) -> ScriptDirectory:
    return ScriptDirectory(
        str(ENVIRONMENT), version_locations=[str(versions)], file_template="%(rev)s_%(slug)s"
    )


def _current(connection: Connection, history: History) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": history.version_table})
    return context.get_current_revision()


def _compare(connection: Connection, history: History) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"include_name": history.owns, "compare_type": True}
    )
    return list(compare_metadata(context, history.metadata))


def new_revision(
    connection: Connection, history: History, message: str, *, autogenerate: bool = True
) -> list[str]:
    """Write the next revision of ``history`` (autogenerated from the difference between
    the models and a database at the head, given as ``connection``); the files written."""
    script = history.script()
    number = len(list(script.walk_revisions())) + 1
    written = command.revision(
        history.config(connection),
        message=message,
        autogenerate=autogenerate,
        rev_id=f"{history.module if history.kind == 'tables' else 'messaging'}_{number:04d}",
        version_path=str(history.versions),
    )
    scripts = written if isinstance(written, list) else [written]
    return [script.path for script in scripts if script is not None]
