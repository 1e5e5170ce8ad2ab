"""The ``cleave`` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import sys
from collections.abc import Sequence

from entrypoints.settings import Settings, settings_from_environment
from kernel.errors import CleaveError, ConfigurationError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if not hasattr(arguments, "action"):
        parser.print_help()
        return 2
    try:
        settings = settings_from_environment()
    except ConfigurationError as error:
        print(f"cleave: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    try:
        result: int = arguments.action(arguments, settings)
        return result
    except (ConfigurationError, CleaveError, ValueError) as error:
        print(f"cleave: {error}", file=sys.stderr)
        return 1


def configure_logging(level: str) -> None:
    import stamina.instrumentation

    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One log stream: stamina would otherwise print retries through structlog when present.
    stamina.instrumentation.set_on_retry_hooks([stamina.instrumentation.LoggingOnRetryHook])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cleave",
        description="A modular monolith shop that splits into services without code changes.",
    )
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="serve the whole shop in one process")
    run.add_argument("--host", help="address to listen on (CLEAVE_HOST, default 127.0.0.1)")
    run.add_argument("--port", type=int, help="port to listen on (CLEAVE_PORT, default 8000)")
    run.set_defaults(action=_run)

    demo = commands.add_parser("demo", help="fill a fresh database and show an order flow")
    demo.add_argument("--database-url", help="use this database instead of a temporary one")
    demo.set_defaults(action=_demo)

    users = commands.add_parser("users", help="manage accounts").add_subparsers(title="users")
    admin = users.add_parser("create-admin", help="create an admin (or promote a user)")
    admin.add_argument("--email", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument("--name", default="Admin")
    admin.set_defaults(action=_create_admin)

    letters = commands.add_parser(
        "dead-letters", help="inspect and replay deliveries that failed for good"
    ).add_subparsers(title="dead-letters")
    listing = letters.add_parser("list", help="list dead letters")
    listing.add_argument("--module", help="only this module's")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(action=_dead_letters_list)
    show = letters.add_parser("show", help="show one dead letter")
    show.add_argument("ref", help="module:id, as printed by list")
    show.set_defaults(action=_dead_letters_show)
    retry = letters.add_parser("retry", help="put dead letters back in their outbox")
    retry.add_argument("refs", nargs="*", help="module:id ... (default: none)")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    retry.set_defaults(action=_dead_letters_retry)
    purge = letters.add_parser("purge", help="delete dead letters")
    purge.add_argument("refs", nargs="*", help="module:id ...")
    purge.add_argument("--all", action="store_true", help="every dead letter")
    purge.set_defaults(action=_dead_letters_purge)

    sandbox = commands.add_parser(
        "sandbox-provider", help="serve the sandbox payment provider on its own"
    )
    sandbox.add_argument("--port", type=int, default=8099)
    sandbox.add_argument("--slow-seconds", type=float, default=10.0)
    sandbox.set_defaults(action=_sandbox)
    return parser


def _run(arguments: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    host = arguments.host or settings.host
    port = arguments.port or settings.port
    uvicorn.run(
        "entrypoints.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    return 0


def _demo(arguments: argparse.Namespace, settings: Settings) -> int:
    from entrypoints.demo import run_demo

    asyncio.run(run_demo(arguments.database_url))
    return 0


def _create_admin(arguments: argparse.Namespace, settings: Settings) -> int:
    from adapters.sqlalchemy.database import Database
    from entrypoints.bootstrap import bootstrap, create_tables
    from kernel.messages import SYSTEM
    from modules.identity.contracts import EnsureAdmin

    async def create() -> None:
        database = Database(settings.database_url, schema=settings.database_schema)
        try:
            await create_tables(database)
            # Only identity runs here; what it emits waits in its outbox for the app's relay.
            runtime = bootstrap(database=database, settings=settings, hosted=["identity"])
            user = await runtime.bus.send(
                EnsureAdmin(
                    email=arguments.email, password=arguments.password, name=arguments.name
                ),
                principal=SYSTEM,
            )
            print(f"admin {user.email} ({user.id}) is ready")
        finally:
            await database.dispose()

    asyncio.run(create())
    return 0


def _dead_letters(settings: Settings):  # type: ignore[no-untyped-def]
    from adapters.sqlalchemy.database import Database
    from adapters.sqlalchemy.dead_letters import DeadLetters
    from entrypoints.bootstrap import create_tables, shop_modules

    modules = shop_modules()
    # A tool may wait for the app's writes; it has no event loop to keep responsive.
    database = Database(settings.database_url, schema=settings.database_schema, inline=False)
    return database, DeadLetters(database, [module.name for module in modules]), create_tables


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _dead_letters_list(arguments: argparse.Namespace, settings: Settings) -> int:
    async def listing() -> None:
        database, letters, create_tables = _dead_letters(settings)
        try:
            await create_tables(database)
            found = await letters.list(arguments.module)
        finally:
            await database.dispose()
        if arguments.json:
            for letter in found:
                print(
                    json.dumps(
                        {
                            "ref": letter.ref,
                            "name": letter.name,
                            "target": letter.target,
                            "attempts": letter.attempts,
                            "reason": letter.reason,
                            "failed_at": letter.failed_at,
                            "message_id": letter.message_id,
                        }
                    )
                )
            return
        if not found:
            print("no dead letters")
            return
        for letter in found:
            print(
                f"{letter.ref:<18} {_when(letter.failed_at)}  {letter.name} -> {letter.target}"
                f"  ({letter.attempts} attempts): {letter.reason}"
            )

    asyncio.run(listing())
    return 0


def _dead_letters_show(arguments: argparse.Namespace, settings: Settings) -> int:
    async def show() -> int:
        database, letters, create_tables = _dead_letters(settings)
        try:
            await create_tables(database)
            letter = await letters.get(arguments.ref)
        finally:
            await database.dispose()
        if letter is None:
            print(f"cleave: no dead letter {arguments.ref}", file=sys.stderr)
            return 1
        print(
            json.dumps(
                {
                    "ref": letter.ref,
                    "message_id": letter.message_id,
                    "name": letter.name,
                    "target": letter.target,
                    "attempts": letter.attempts,
                    "reason": letter.reason,
                    "failed_at": _when(letter.failed_at),
                    "envelope": json.loads(letter.envelope),
                    "message": json.loads(letter.body),
                },
                indent=2,
            )
        )
        return 0

    return asyncio.run(show())


def _refs(arguments: argparse.Namespace) -> list[str] | None:
    if arguments.all:
        return None
    if not arguments.refs:
        raise ValueError("name dead letters (module:id ...) or pass --all")
    return list(arguments.refs)


def _dead_letters_retry(arguments: argparse.Namespace, settings: Settings) -> int:
    refs = _refs(arguments)

    async def retry() -> int:
        database, letters, create_tables = _dead_letters(settings)
        try:
            await create_tables(database)
            targets = refs if refs is not None else [letter.ref for letter in await letters.list()]
            missing = 0
            for ref in targets:
                if await letters.retry(ref):
                    print(f"{ref}: back in the outbox")
                else:
                    print(f"{ref}: no such dead letter", file=sys.stderr)
                    missing += 1
            return 1 if missing else 0
        finally:
            await database.dispose()

    return asyncio.run(retry())


def _dead_letters_purge(arguments: argparse.Namespace, settings: Settings) -> int:
    refs = _refs(arguments)

    async def purge() -> None:
        database, letters, create_tables = _dead_letters(settings)
        try:
            await create_tables(database)
            removed = 0
            if refs is None:
                removed = await letters.purge()
            else:
                for ref in refs:
                    removed += await letters.purge(ref)
            print(f"purged {removed} dead letter(s)")
        finally:
            await database.dispose()

    asyncio.run(purge())
    return 0


def _sandbox(arguments: argparse.Namespace, settings: Settings) -> int:
    import time

    from adapters.payments.sandbox import SandboxPaymentProvider

    provider = SandboxPaymentProvider(port=arguments.port, slow_seconds=arguments.slow_seconds)
    provider.start()
    print(f"sandbox payment provider on {provider.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        provider.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
