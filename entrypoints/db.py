"""``cleave db``: migrate each module's database, see where it stands, write a revision.

Without ``--topology`` every module keeps its state in ``CLEAVE_DATABASE_URL`` (the
monolith); with one, each module in the database the topology gives it
(``CLEAVE_<MODULE>_DATABASE_URL``), so one command migrates a whole split deployment, or one
service of it (``cleave db upgrade ordering --topology topologies/split-http.toml``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoints.settings import Settings

if TYPE_CHECKING:
    from adapters.sqlalchemy.database import Database
    from adapters.sqlalchemy.migrations import History

#: The ``cleave`` command imports this module for its parser: what migrating needs (alembic,
#: the modules) is imported by the commands that migrate.


def add_db_commands(commands: Any) -> None:
    """Add ``cleave db upgrade|current|revision`` to the ``cleave`` command's subparsers."""
    db = commands.add_parser(
        "db", help="schema migrations of each module's database (alembic)"
    ).add_subparsers(title="db")
    where = "a module, or a service of --topology (default: every module)"
    topology = "a topology: each module's own database (default: CLEAVE_DATABASE_URL for all)"

    upgrading = db.add_parser("upgrade", help="migrate to this version's schema")
    upgrading.add_argument("module", nargs="?", help=where)
    upgrading.add_argument("--topology", help=topology)
    upgrading.set_defaults(action=_upgrade)

    current = db.add_parser("current", help="print each module's revision, and the head")
    current.add_argument("module", nargs="?", help=where)
    current.add_argument("--topology", help=topology)
    current.set_defaults(action=_current)

    revision = db.add_parser(
        "revision",
        help="development: write a module's next revision from the difference between its "
        "tables (tables.py) and its migrations",
    )
    revision.add_argument("module", help="the module whose tables changed")
    revision.add_argument("-m", "--message", required=True, help="what the revision changes")
    revision.add_argument(
        "--messaging",
        action="store_true",
        help="a revision of the outbox, inbox, dead-letter and timer tables (every module's)",
    )
    revision.add_argument("--empty", action="store_true", help="an empty revision to fill in")
    revision.set_defaults(action=_revision)


@asynccontextmanager
async def _databases(
    settings: Settings, module: str | None, topology_path: str | None
) -> AsyncIterator[list[tuple[Database, list[History]]]]:
    """Each database with the histories of the modules (or the one module, or service)
    that keep their state in it."""
    from adapters.sqlalchemy.database import Database
    from entrypoints.bootstrap import SHOP_PACKAGES, schema_histories, shop_modules

    names = list(SHOP_PACKAGES)
    urls = dict.fromkeys(names, settings.database_url)
    if topology_path is not None:
        from entrypoints.topology import load_topology

        topology = load_topology(topology_path, names)
        names = list(topology.modules)
        if module is not None:
            names = list(topology.service(module).modules) if module not in names else [module]
        urls = {name: topology.database_url(name) for name in names}
    elif module is not None:
        if module not in names:
            raise ValueError(f"no module {module!r} (modules: {', '.join(names)})")
        names = [module]
    groups: dict[str, tuple[Database, list[History]]] = {}
    try:
        for found in shop_modules(names):
            url = urls[found.name]
            if url not in groups:
                # A tool: nothing else runs on its event loop, so no inline SQLite.
                database = Database(url, schema=settings.database_schema, inline=False)
                if database.is_sqlite and database.url.database:
                    Path(database.url.database).parent.mkdir(parents=True, exist_ok=True)
                groups[url] = (database, [])
            groups[url][1].extend(schema_histories(found))
        yield list(groups.values())
    finally:
        for database, _ in groups.values():
            await database.dispose()


async def _report(groups: list[tuple[Database, list[History]]]) -> None:
    from adapters.sqlalchemy.migrations import positions

    for database, histories in groups:
        print(f"{database.display_url}:")
        for position in await positions(database, histories):
            print(f"  {position.describe()}")


def _upgrade(arguments: argparse.Namespace, settings: Settings) -> int:
    from adapters.sqlalchemy.migrations import upgrade

    async def run() -> None:
        async with _databases(settings, arguments.module, arguments.topology) as groups:
            for database, histories in groups:
                await upgrade(database, histories, from_empty="migrate")
            await _report(groups)

    asyncio.run(run())
    return 0


def _current(arguments: argparse.Namespace, settings: Settings) -> int:
    from adapters.sqlalchemy.migrations import positions

    async def run() -> int:
        async with _databases(settings, arguments.module, arguments.topology) as groups:
            await _report(groups)
            behind = [
                position
                for database, histories in groups
                for position in await positions(database, histories)
                if position.behind
            ]
        # Scripts and probes can ask "is this database ready for this version?".
        return 1 if behind else 0

    return asyncio.run(run())


def _revision(arguments: argparse.Namespace, settings: Settings) -> int:
    from adapters.sqlalchemy.database import Database
    from adapters.sqlalchemy.migrations import new_revision, upgrade
    from entrypoints.bootstrap import schema_histories, shop_modules

    (module,) = shop_modules([arguments.module])
    histories = schema_histories(module)
    history = histories[1] if arguments.messaging else histories[0]

    async def run() -> list[str]:
        # The models are compared with a scratch database at the head of the history.
        with tempfile.TemporaryDirectory(prefix="cleave-revision-") as directory:
            database = Database(f"sqlite+aiosqlite:///{directory}/head.db", inline=False)
            try:
                await upgrade(database, [history], from_empty="migrate")
                async with database.engine.begin() as connection:
                    return await connection.run_sync(
                        new_revision, history, arguments.message, autogenerate=not arguments.empty
                    )
            finally:
                await database.dispose()

    for path in asyncio.run(run()):
        print(f"wrote {path}")
    if arguments.messaging:
        print(
            "messaging revisions serve every module: name the tables after "
            "messaging_module(), as messaging_0001 does"
        )
    print("read it and tidy it: autogenerate misses renames and data changes")
    return 0
