"""The ``cleave`` command."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

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
    configure_logging(settings.log_level, settings.log_format)
    try:
        result: int = arguments.action(arguments, settings)
        return result
    except (ConfigurationError, CleaveError, ValueError) as error:
        print(f"cleave: {error}", file=sys.stderr)
        return 1


def configure_logging(level: str, log_format: Literal["console", "json"] = "console") -> None:
    import stamina.instrumentation

    from adapters.observability.logs import configure_logging as configure_structlog

    # Every logger of the process (ours, uvicorn's, dramatiq's, alembic's) in one format.
    configure_structlog(level, log_format)
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

    up = commands.add_parser(
        "up", help="start every process of a topology on this machine (Ctrl-C stops them)"
    )
    up.add_argument(
        "--topology", required=True, help="a topology file, e.g. topologies/split-http.toml"
    )
    up.set_defaults(action=_up)

    serve = commands.add_parser(
        "serve",
        help="run one service of a topology (a module's, or the gateway), as a container would",
    )
    serve.add_argument("service", help="a service of the topology, or a module it hosts")
    serve.add_argument("--topology", required=True, help="the topology file")
    serve.add_argument("--host", help="address to listen on (default: the topology's)")
    serve.add_argument("--port", type=int, help="port to listen on (default: the topology's)")
    serve.set_defaults(action=_serve)

    worker = commands.add_parser(
        "worker",
        help="run the dramatiq workers of a service reached over queues (transport redis)",
    )
    worker.add_argument("service", help="a service of the topology, or a module it hosts")
    worker.add_argument("--topology", required=True, help="the topology file")
    worker.add_argument(
        "--processes", type=int, default=1, help="worker processes (default 1; >1 needs PostgreSQL)"
    )
    worker.add_argument("--threads", type=int, default=8, help="threads per process (default 8)")
    worker.add_argument(
        "--port", type=int, help="where to serve /health/ready (default: the topology's port)"
    )
    worker.add_argument("--host", help="address of the health probes (default: the topology's)")
    worker.set_defaults(action=_worker)

    topology = commands.add_parser("topology", help="check topologies").add_subparsers(
        title="topology"
    )
    check = topology.add_parser("check", help="validate a topology and print its process plan")
    check.add_argument("file")
    check.set_defaults(action=_topology_check)

    deploy = commands.add_parser(
        "deploy", help="render deployment files (Compose, Kubernetes) from a topology"
    ).add_subparsers(title="deploy")
    render = deploy.add_parser("render", help="write the files of one target for a topology")
    render.add_argument("--target", required=True, choices=["compose", "k8s"])
    render.add_argument("file", help="a topology file under topologies/ (the image has those)")
    render.add_argument("--out", help="output directory (default: deploy/<topology name>/)")
    render.add_argument("--image", default="cleave:latest", help="the image to run")
    render.add_argument("--namespace", default="cleave", help="Kubernetes namespace")
    render.add_argument(
        "--with-secret-template",
        action="store_true",
        help="k8s: also write secret.template.yaml, the Secret with placeholders to replace",
    )
    render.set_defaults(action=_deploy_render)

    demo = commands.add_parser("demo", help="fill a fresh database and show an order flow")
    demo.add_argument("--database-url", help="use this database instead of a temporary one")
    demo.add_argument(
        "--url",
        help="drive a running shop (cleave run, cleave up) instead of starting one; its admin "
        "is CLEAVE_ADMIN_EMAIL / CLEAVE_ADMIN_PASSWORD",
    )
    demo.set_defaults(action=_demo)

    graph = commands.add_parser(
        "graph", help="draw the module map, or the messages a command sets off"
    )
    graph.add_argument(
        "--format",
        choices=["mermaid", "dot", "markdown"],
        default="mermaid",
        help="markdown: the whole docs/modules.md page (the map and the recorded flows)",
    )
    graph.add_argument(
        "--flow",
        metavar="COMMAND",
        help="the messages COMMAND (e.g. PlaceOrder) sets off, recorded from a run of the "
        "shop in this process, as a mermaid sequence diagram",
    )
    graph.add_argument("--out", help="write to this file instead of printing")
    graph.add_argument(
        "--into",
        metavar="FILE",
        help="put the map into FILE, between its <!-- cleave graph --> markers (README.md)",
    )
    graph.set_defaults(action=_graph)

    from entrypoints.db import add_db_commands

    add_db_commands(commands)

    from entrypoints.contracts_gate import add_contracts_commands

    add_contracts_commands(commands)

    users = commands.add_parser("users", help="manage accounts").add_subparsers(title="users")
    admin = users.add_parser(
        "create-admin",
        help="create an admin (or promote a user)",
        description="The password comes from standard input with --password-stdin, else from "
        "CLEAVE_ADMIN_PASSWORD, else from a prompt: never from the command line, where every "
        "user of the machine sees it (ps).",
    )
    admin.add_argument("--email", required=True)
    admin.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    # Kept only to explain why it is refused: argparse would merely call it unknown.
    admin.add_argument("--password", help=argparse.SUPPRESS)
    admin.add_argument("--name", default="Admin")
    admin.set_defaults(action=_create_admin)

    letters = commands.add_parser(
        "dead-letters", help="inspect and replay deliveries that failed for good"
    ).add_subparsers(title="dead-letters")
    topology_help = (
        "a topology: every module's database, and the broker's dead letters of the modules "
        "it reaches over queues (default: CLEAVE_DATABASE_URL only)"
    )
    listing = letters.add_parser("list", help="list dead letters")
    listing.add_argument("--module", help="only this module's")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.add_argument("--topology", help=topology_help)
    listing.set_defaults(action=_dead_letters_list)
    show = letters.add_parser("show", help="show one dead letter")
    show.add_argument("ref", help="module:id (or redis:module:id), as printed by list")
    show.add_argument("--topology", help=topology_help)
    show.set_defaults(action=_dead_letters_show)
    retry = letters.add_parser(
        "retry", help="put dead letters back in their outbox (or on their queue)"
    )
    retry.add_argument("refs", nargs="*", help="module:id ... (default: none)")
    retry.add_argument("--all", action="store_true", help="every dead letter")
    retry.add_argument("--topology", help=topology_help)
    retry.set_defaults(action=_dead_letters_retry)
    purge = letters.add_parser("purge", help="delete dead letters")
    purge.add_argument("refs", nargs="*", help="module:id ...")
    purge.add_argument("--all", action="store_true", help="every dead letter")
    purge.add_argument("--topology", help=topology_help)
    purge.set_defaults(action=_dead_letters_purge)

    sandbox = commands.add_parser(
        "sandbox-provider", help="serve the sandbox payment provider on its own"
    )
    sandbox.add_argument("--port", type=int, default=8099)
    sandbox.add_argument("--slow-seconds", type=float, default=10.0)
    sandbox.set_defaults(action=_sandbox)
    return parser


def _run(arguments: argparse.Namespace, settings: Settings) -> int:
    from adapters.http.server import serve

    # The app refuses these at start too, but inside uvicorn's traceback: say it plainly.
    refusals = settings.refusals(split=False)
    if refusals:
        raise ConfigurationError("cleave run refuses to start:\n  " + "\n  ".join(refusals))
    serve(
        "entrypoints.app:create_app",
        host=arguments.host or settings.host,
        port=arguments.port or settings.port,
        limits=_server_limits(settings),
        graceful_seconds=settings.shutdown_grace_seconds,
    )
    return 0


def _server_limits(settings: Settings) -> Any:
    from adapters.http.server import ServerLimits

    return ServerLimits(
        header_timeout=settings.header_timeout_seconds,
        max_connections=settings.max_connections,
        trusted_proxies=tuple(
            proxy.strip() for proxy in settings.trusted_proxies.split(",") if proxy.strip()
        ),
    )


def _load(path: str):  # type: ignore[no-untyped-def]
    from entrypoints.bootstrap import SHOP_PACKAGES
    from entrypoints.topology import load_topology

    return load_topology(path, list(SHOP_PACKAGES))


def _topology_check(arguments: argparse.Namespace, settings: Settings) -> int:
    print(_load(arguments.file).plan())
    return 0


def _deploy_render(arguments: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from entrypoints.deploy import render_files, topology_path_in_image, write_files

    topology = _load(arguments.file)
    files = render_files(
        topology,
        arguments.target,
        topology_path=topology_path_in_image(arguments.file),
        image=arguments.image,
        namespace=arguments.namespace,
        with_secret_template=arguments.with_secret_template,
    )
    for path in write_files(files, Path(arguments.out or Path("deploy") / topology.name)):
        print(f"wrote {path}")
    return 0


def _up(arguments: argparse.Namespace, settings: Settings) -> int:
    from entrypoints.up import run_up

    return run_up(_load(arguments.topology), arguments.topology)


def _serve(arguments: argparse.Namespace, settings: Settings) -> int:
    import os

    from adapters.http.server import serve

    topology = _load(arguments.topology)
    service = topology.service(arguments.service)
    refusals = settings.refusals(split=True, strict=True)
    if refusals:
        raise ConfigurationError(
            "cleave serve runs a service as in production and refuses:\n  " + "\n  ".join(refusals)
        )
    if service.transport != "http" and not service.public:
        raise ConfigurationError(
            f"service {service.name!r} is reached over {service.transport}: run it with "
            f"cleave worker {service.name} --topology {arguments.topology}"
        )
    os.environ["CLEAVE_TOPOLOGY"] = arguments.topology
    os.environ["CLEAVE_SERVICE"] = service.name
    serve(
        "entrypoints.app:service_app",
        host=arguments.host or service.host,
        port=arguments.port or service.port,
        limits=_server_limits(settings),
        graceful_seconds=settings.shutdown_grace_seconds,
    )
    return 0


def _worker(arguments: argparse.Namespace, settings: Settings) -> int:
    from entrypoints.worker import run_worker

    if arguments.processes < 1 or arguments.threads < 1:
        raise ValueError("--processes and --threads must be at least 1")
    return run_worker(
        arguments.topology,
        arguments.service,
        settings,
        processes=arguments.processes,
        threads=arguments.threads,
        port=arguments.port,
        host=arguments.host,
    )


def _graph(arguments: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from entrypoints.graph import render, shop_map, with_map

    if arguments.into:
        path = Path(arguments.into)
        path.write_text(with_map(path.read_text(encoding="utf-8"), shop_map()), encoding="utf-8")
        print(f"wrote the map into {path}")
        return 0
    text = render(arguments.format, arguments.flow)
    if arguments.out:
        # Written whole once drawn: a failed run leaves the old file, not an empty one.
        Path(arguments.out).write_text(text, encoding="utf-8")
        print(f"wrote {arguments.out}")
    else:
        print(text, end="")
    return 0


def _demo(arguments: argparse.Namespace, settings: Settings) -> int:
    from entrypoints.demo import run_demo, run_demo_at

    if arguments.url:
        if not (settings.admin_email and settings.admin_password):
            raise ValueError("--url needs CLEAVE_ADMIN_EMAIL and CLEAVE_ADMIN_PASSWORD")
        asyncio.run(run_demo_at(arguments.url, settings.admin_email, settings.admin_password))
    else:
        asyncio.run(run_demo(arguments.database_url))
    return 0


def _create_admin(arguments: argparse.Namespace, settings: Settings) -> int:
    from adapters.sqlalchemy.database import Database
    from entrypoints.bootstrap import bootstrap, create_tables
    from kernel.messages import SYSTEM
    from modules.identity.contracts import EnsureAdmin

    password = _admin_password(arguments, settings)

    async def create() -> None:
        database = Database(settings.database_url, schema=settings.database_schema)
        try:
            await create_tables(database)
            # Only identity runs here; what it emits waits in its outbox for the app's relay.
            runtime = bootstrap(database=database, settings=settings, hosted=["identity"])
            user = await runtime.bus.send(
                EnsureAdmin(email=arguments.email, password=password, name=arguments.name),
                principal=SYSTEM,
            )
            print(f"admin {user.email} ({user.id}) is ready")
        finally:
            await database.dispose()

    asyncio.run(create())
    return 0


def _admin_password(arguments: argparse.Namespace, settings: Settings) -> str:
    """The new admin's password, from anywhere but the command line."""
    import getpass

    if arguments.password is not None:
        raise ValueError(
            "--password would show the password to every user of this machine (ps): pipe it "
            "with --password-stdin, set CLEAVE_ADMIN_PASSWORD, or type it at the prompt"
        )
    if arguments.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif settings.admin_password:
        password = settings.admin_password
    elif sys.stdin.isatty():
        try:
            password = getpass.getpass("Password for the admin: ")
            again = getpass.getpass("The same again: ")
        except EOFError:
            raise ValueError("no password typed") from None
        if again != password:
            raise ValueError("the two passwords differ")
    else:
        raise ValueError(
            "no password: pipe it with --password-stdin, set CLEAVE_ADMIN_PASSWORD, or run "
            "the command in a terminal to type it"
        )
    if not password:
        raise ValueError("the password is empty")
    return password


class _DeadLetterStores:
    """Every dead letter an operator can reach: the outbox dead letters of each module's
    database (one database, ``CLEAVE_DATABASE_URL``, or each module's from ``--topology``),
    and, with a topology that reaches modules over queues, what the broker dead-lettered."""

    def __init__(self, settings: Settings, topology_path: str | None) -> None:
        self.settings = settings
        self.topology = _load(topology_path) if topology_path else None
        self.databases: list[Any] = []
        #: The outbox dead letters of each module, by module name.
        self.outbox: dict[str, Any] = {}
        self.broker: Any = None

    async def __aenter__(self) -> _DeadLetterStores:
        from pathlib import Path

        from adapters.sqlalchemy.database import Database
        from adapters.sqlalchemy.dead_letters import DeadLetters
        from entrypoints.bootstrap import create_tables, shop_modules

        settings, topology = self.settings, self.topology
        if topology is None:
            groups = {settings.database_url: [module.name for module in shop_modules()]}
        else:
            groups = {}
            for service in topology.services:
                for module in service.modules:
                    groups.setdefault(topology.database_url(module), []).append(module)
        for url, names in groups.items():
            # A tool may wait for the app's writes; it has no event loop to keep responsive.
            database = Database(url, schema=settings.database_schema, inline=False)
            if database.is_sqlite and database.url.database:
                Path(database.url.database).parent.mkdir(parents=True, exist_ok=True)
            self.databases.append(database)
            await create_tables(database, shop_modules(names))
            letters = DeadLetters(database, names)
            self.outbox.update({name: letters for name in names})
        if topology is not None:
            queued = [m for m in topology.modules if topology.transport_of(m) == "redis"]
            if queued:
                from adapters.bus.redis.config import QueueConfig
                from adapters.bus.redis.dead_letters import broker_dead_letters

                self.broker = broker_dead_letters(QueueConfig.from_settings(settings), queued)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.broker is not None:
            self.broker.close()
        for database in self.databases:
            await database.dispose()

    def _outbox_of(self, module: str) -> Any:
        try:
            return self.outbox[module]
        except KeyError:
            known = ", ".join(self.outbox) or "none"
            raise ValueError(f"no module {module!r} here (known: {known})") from None

    def _is_broker(self, ref: str) -> bool:
        from adapters.bus.redis.dead_letters import is_broker_ref

        if not is_broker_ref(ref):
            return False
        if self.broker is None:
            raise ValueError(f"{ref} is a broker dead letter: name the topology (--topology FILE)")
        return True

    async def list(self, module: str | None = None) -> list[Any]:
        found: list[Any] = []
        if module is not None:
            found.extend(await self._outbox_of(module).list(module))
        else:
            for letters in {id(s): s for s in self.outbox.values()}.values():
                found.extend(await letters.list())
        if self.broker is not None and (module is None or module in self.broker.modules):
            found.extend(await asyncio.to_thread(self.broker.list, module))
        return sorted(found, key=lambda letter: letter.failed_at)

    async def get(self, ref: str) -> Any:
        if self._is_broker(ref):
            return await asyncio.to_thread(self.broker.get, ref)
        return await self._outbox_of(ref.partition(":")[0]).get(ref)

    async def retry(self, ref: str) -> str | None:
        """Where the dead letter went back to; None if there is no such dead letter."""
        if self._is_broker(ref):
            replayed = await asyncio.to_thread(self.broker.retry, ref)
            return "back on its queue" if replayed else None
        replayed = await self._outbox_of(ref.partition(":")[0]).retry(ref)
        return "back in the outbox" if replayed else None

    async def purge(self, ref: str | None = None) -> int:
        if ref is not None:
            if self._is_broker(ref):
                return int(await asyncio.to_thread(self.broker.purge, ref))
            return int(await self._outbox_of(ref.partition(":")[0]).purge(ref))
        removed = 0
        for letters in {id(s): s for s in self.outbox.values()}.values():
            removed += await letters.purge()
        if self.broker is not None:
            removed += await asyncio.to_thread(self.broker.purge)
        return removed


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _dead_letters_list(arguments: argparse.Namespace, settings: Settings) -> int:
    async def listing() -> None:
        async with _DeadLetterStores(settings, arguments.topology) as stores:
            found = await stores.list(arguments.module)
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
        async with _DeadLetterStores(settings, arguments.topology) as stores:
            letter = await stores.get(arguments.ref)
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
        async with _DeadLetterStores(settings, arguments.topology) as stores:
            targets = refs if refs is not None else [letter.ref for letter in await stores.list()]
            missing = 0
            for ref in targets:
                where = await stores.retry(ref)
                if where is not None:
                    print(f"{ref}: {where}")
                else:
                    print(f"{ref}: no such dead letter", file=sys.stderr)
                    missing += 1
            return 1 if missing else 0

    return asyncio.run(retry())


def _dead_letters_purge(arguments: argparse.Namespace, settings: Settings) -> int:
    refs = _refs(arguments)

    async def purge() -> None:
        async with _DeadLetterStores(settings, arguments.topology) as stores:
            removed = 0
            if refs is None:
                removed = await stores.purge()
            else:
                for ref in refs:
                    removed += await stores.purge(ref)
            print(f"purged {removed} dead letter(s)")

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
