"""Topologies: which module runs in which process, and how the others reach it.

A topology is a TOML file (``topologies/*.toml``)::

    name = "split-http"

    [services.gateway]          # one process (or ``instances`` of it)
    public = true               # serves the public REST API
    port = 8000

    [services.inventory]
    modules = ["inventory"]     # the modules it hosts; the others are remote to it
    port = 8103
    instances = 2               # ports 8103 and 8104; needs PostgreSQL
    transport = "http"          # how the others reach its modules: "http" or "redis"

    [remote.payments]           # a module hosted outside this file
    url = "http://payments.internal:8000"

Environment variables override addresses (``CLEAVE_<MODULE>_URL``, comma-separated for
several instances) and databases (``CLEAVE_<MODULE>_DATABASE_URL``). ``check`` reports every
problem at once, each with the line of the file it comes from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kernel.errors import ConfigurationError

TransportKind = Literal["http", "redis"]
TRANSPORTS: tuple[TransportKind, ...] = ("http", "redis")
_SERVICE_KEYS = {"modules", "public", "host", "port", "instances", "transport", "database"}
_REMOTE_KEYS = {"url", "transport"}
_TOP_KEYS = {"name", "description", "services", "remote"}
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


class TopologyError(ConfigurationError):
    """A topology file that cannot run; ``problems`` are ``"FILE:LINE: what"`` lines."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{source} cannot run:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class Service:
    """One process of a topology (``instances`` copies of it)."""

    name: str
    modules: tuple[str, ...] = ()
    public: bool = False
    host: str = "127.0.0.1"
    port: int | None = None
    instances: int = 1
    transport: TransportKind = "http"
    #: One database URL for every module of the service; per module when unset.
    database: str | None = None
    line: int = 0

    @property
    def ports(self) -> list[int]:
        """The ports of its instances: ``port``, ``port + 1``..."""
        if self.port is None:
            return []
        return [self.port + number for number in range(self.instances)]

    def urls(self) -> list[str]:
        """The base URL of each instance."""
        return [f"http://{self.host}:{port}" for port in self.ports]


@dataclass(frozen=True)
class RemoteEntry:
    """A module hosted outside the topology, at ``url``."""

    module: str
    url: str
    transport: TransportKind = "http"
    line: int = 0


@dataclass(frozen=True)
class Topology:
    """A validated topology."""

    name: str
    services: tuple[Service, ...]
    remote: tuple[RemoteEntry, ...] = ()
    source: str = "<topology>"
    description: str = ""
    #: Every module of the system (hosted by a service or remote).
    modules: tuple[str, ...] = field(default=())

    # -- lookups ----------------------------------------------------------------------------

    def service(self, name: str) -> Service:
        """The service called ``name``, or else the one hosting module ``name``."""
        for service in self.services:
            if service.name == name:
                return service
        for service in self.services:
            if name in service.modules:
                return service
        known = ", ".join(service.name for service in self.services)
        raise ConfigurationError(f"{self.source} has no service or module {name!r} ({known})")

    def host_of(self, module: str) -> Service | None:
        """The service that hosts ``module`` (None when it is remote)."""
        return next((s for s in self.services if module in s.modules), None)

    @property
    def gateway(self) -> Service | None:
        """The service that serves the public API."""
        return next((service for service in self.services if service.public), None)

    def transport_of(self, module: str) -> TransportKind:
        """How the other processes reach ``module``."""
        service = self.host_of(module)
        if service is not None:
            return service.transport
        return next(entry.transport for entry in self.remote if entry.module == module)

    def addresses(self, module: str, environ: Mapping[str, str] | None = None) -> list[str]:
        """Base URLs of the instances serving ``module`` over HTTP; the environment's
        ``CLEAVE_<MODULE>_URL`` (comma-separated) wins over the file."""
        environ = os.environ if environ is None else environ
        override = environ.get(module_variable(module, "URL"), "").strip()
        if override:
            return [url.strip().rstrip("/") for url in override.split(",") if url.strip()]
        service = self.host_of(module)
        if service is not None:
            return service.urls()
        return [entry.url.rstrip("/") for entry in self.remote if entry.module == module]

    def database_url(
        self,
        module: str,
        environ: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
    ) -> str:
        """The database of ``module``: ``CLEAVE_<MODULE>_DATABASE_URL``, else its service's
        ``database``, else a SQLite file of its own in the data directory."""
        environ = os.environ if environ is None else environ
        override = environ.get(module_variable(module, "DATABASE_URL"), "").strip()
        if override:
            return override
        service = self.host_of(module)
        if service is not None and service.database:
            return service.database
        directory = data_dir or default_data_dir(self, environ)
        return f"sqlite+aiosqlite:///{directory / f'{module}.db'}"

    # -- the plan ---------------------------------------------------------------------------

    def plan(self, environ: Mapping[str, str] | None = None) -> str:
        """The processes this topology starts, one line each, for people."""
        environ = os.environ if environ is None else environ
        count = sum(service.instances for service in self.services)
        lines = [f"topology {self.name} ({self.source}): {count} processes"]
        for service in self.services:
            where = (
                ", ".join(self.addresses(service.modules[0], environ))
                if (service.modules and service.transport == "http")
                else ", ".join(service.urls())
            )
            hosted = ", ".join(service.modules) or "every module remote"
            role = "public API; " if service.public else ""
            lines.append(
                f"  {service.name:<14} {where or service.transport + ' worker':<28} "
                f"{role}{hosted} (over {service.transport})"
            )
            databases: dict[str, list[str]] = {}
            for module in service.modules:
                url = _redact(self.database_url(module, environ))
                databases.setdefault(url, []).append(module)
            for url, modules in databases.items():
                lines.append(f"  {'':<14} {'':<28} database of {', '.join(modules)}: {url}")
        for entry in self.remote:
            lines.append(f"  {entry.module:<14} {entry.url:<28} outside this topology")
        return "\n".join(lines)


def module_variable(module: str, suffix: str) -> str:
    """``CLEAVE_<MODULE>_<SUFFIX>``: the environment variable of a module's setting."""
    return f"CLEAVE_{module.upper().replace('-', '_')}_{suffix}"


def default_data_dir(topology: Topology, environ: Mapping[str, str]) -> Path:
    """Where the per-module SQLite files of a topology go (``CLEAVE_DATA_DIR``)."""
    base = environ.get("CLEAVE_DATA_DIR", "").strip()
    return Path(base) if base else Path(".cleave") / topology.name


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


# -- loading and checking ---------------------------------------------------------------------


def load_topology(
    path: str | Path,
    known_modules: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> Topology:
    """Read and check a topology file; ``TopologyError`` lists every problem with its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read topology {path}: {error.strerror}") from error
    return parse_topology(text, str(path), known_modules, environ)


def parse_topology(
    text: str,
    source: str,
    known_modules: Sequence[str],
    environ: Mapping[str, str] | None = None,
) -> Topology:
    """Check a topology's text; see ``load_topology``."""
    environ = os.environ if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise TopologyError(source, [f"{source}: not valid TOML: {error}"]) from error
    lines = _Lines(text, source)
    problems: list[str] = []
    for key in sorted(set(data) - _TOP_KEYS):
        problems.append(lines.at((), key, f"unknown key {key!r} (known: {sorted(_TOP_KEYS)})"))

    services = _services(data.get("services", {}), lines, known_modules, problems)
    remote = _remote(data.get("remote", {}), lines, known_modules, problems)
    _check_hosting(services, remote, lines, known_modules, environ, problems)
    _check_ports(services, lines, problems)
    _check_instances(services, lines, environ, problems)
    gateways = [service for service in services if service.public]
    if len(gateways) > 1:
        names = ", ".join(service.name for service in gateways)
        problems.append(
            lines.at(("services", gateways[1].name), "public", f"two public services: {names}")
        )
    if problems:
        raise TopologyError(source, problems)
    name = data.get("name") or Path(source).stem
    return Topology(
        name=str(name),
        services=tuple(services),
        remote=tuple(remote),
        source=source,
        description=str(data.get("description", "")),
        modules=tuple(known_modules),
    )


def _services(
    table: object, lines: _Lines, known_modules: Sequence[str], problems: list[str]
) -> list[Service]:
    if not isinstance(table, dict):
        problems.append(lines.at((), "services", "services must be a table of services"))
        return []
    services = []
    for name, entry in table.items():
        where = ("services", name)
        if not isinstance(entry, dict):
            problems.append(lines.at(where, None, f"service {name!r} must be a table"))
            continue
        if not _NAME.match(name):
            problems.append(
                lines.at(where, None, f"service name {name!r}: use lowercase letters, digits, -")
            )
        for key in sorted(set(entry) - _SERVICE_KEYS):
            problems.append(
                lines.at(
                    where,
                    key,
                    f"service {name!r}: unknown key {key!r} "
                    f"(known: {', '.join(sorted(_SERVICE_KEYS))})",
                )
            )
        modules = entry.get("modules", [])
        if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
            problems.append(lines.at(where, "modules", f"service {name!r}: modules is a list"))
            modules = []
        for module in modules:
            if module not in known_modules:
                problems.append(
                    lines.at(
                        where,
                        "modules",
                        f"service {name!r} hosts unknown module "
                        f"{module!r} (known: {', '.join(known_modules)})",
                    )
                )
        transport = entry.get("transport", "http")
        if transport not in TRANSPORTS:
            problems.append(
                lines.at(
                    where,
                    "transport",
                    f"service {name!r}: transport {transport!r} is "
                    f"not one of {', '.join(TRANSPORTS)}",
                )
            )
            transport = "http"
        public = entry.get("public", False)
        port = entry.get("port")
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            problems.append(lines.at(where, "port", f"service {name!r}: port {port!r} is no port"))
            port = None
        if port is None and (public or transport == "http"):
            problems.append(lines.at(where, None, f"service {name!r} serves HTTP but has no port"))
        instances = entry.get("instances", 1)
        if not isinstance(instances, int) or instances < 1:
            problems.append(lines.at(where, "instances", f"service {name!r}: instances >= 1"))
            instances = 1
        if not modules and not public:
            problems.append(
                lines.at(
                    where,
                    None,
                    f"service {name!r} hosts no module and is not public: it would do nothing",
                )
            )
        services.append(
            Service(
                name=name,
                modules=tuple(m for m in modules if m in known_modules),
                public=bool(public),
                host=str(entry.get("host", "127.0.0.1")),
                port=port,
                instances=instances,
                transport=transport,
                database=entry.get("database"),
                line=lines.line(where, None),
            )
        )
    return services


def _remote(
    table: object, lines: _Lines, known_modules: Sequence[str], problems: list[str]
) -> list[RemoteEntry]:
    if not isinstance(table, dict):
        return []
    entries = []
    for module, entry in table.items():
        where = ("remote", module)
        if module not in known_modules:
            problems.append(lines.at(where, None, f"remote module {module!r} is unknown"))
            continue
        if not isinstance(entry, dict):
            problems.append(lines.at(where, None, f"remote module {module!r} must be a table"))
            continue
        for key in sorted(set(entry) - _REMOTE_KEYS):
            problems.append(lines.at(where, key, f"remote {module!r}: unknown key {key!r}"))
        url = entry.get("url")
        if not url:
            problems.append(lines.at(where, None, f"remote module {module!r} has no url"))
            continue
        transport = entry.get("transport", "http")
        if transport not in TRANSPORTS:
            problems.append(lines.at(where, "transport", f"unknown transport {transport!r}"))
            transport = "http"
        entries.append(RemoteEntry(module, str(url), transport, lines.line(where, None)))
    return entries


def _check_hosting(
    services: list[Service],
    remote: list[RemoteEntry],
    lines: _Lines,
    known_modules: Sequence[str],
    environ: Mapping[str, str],
    problems: list[str],
) -> None:
    hosts: dict[str, Service] = {}
    for service in services:
        for module in service.modules:
            first = hosts.get(module)
            if first is not None:
                problems.append(
                    lines.at(
                        ("services", service.name),
                        "modules",
                        f"module {module!r} is hosted twice: by {first.name!r} (line "
                        f"{first.line}) and {service.name!r}; run more of one service "
                        "with instances = N instead",
                    )
                )
            hosts.setdefault(module, service)
    for entry in remote:
        if entry.module in hosts:
            problems.append(
                lines.at(
                    ("remote", entry.module),
                    None,
                    f"module {entry.module!r} is hosted by {hosts[entry.module].name!r} "
                    "and listed as remote",
                )
            )
    listed = {entry.module for entry in remote}
    for module in known_modules:
        if module in hosts or module in listed:
            continue
        if environ.get(module_variable(module, "URL")):
            problems.append(
                f"{lines.source}: module {module!r} is hosted by no service; "
                f"{module_variable(module, 'URL')} is set, so list it as [remote.{module}]"
            )
        else:
            problems.append(
                f"{lines.source}: module {module!r} is hosted by no service and has no address "
                f"(add it to a service's modules, or a [remote.{module}] url)"
            )


def _check_ports(services: list[Service], lines: _Lines, problems: list[str]) -> None:
    taken: dict[tuple[str, int], Service] = {}
    for service in services:
        for port in service.ports:
            key = (service.host, port)
            other = taken.get(key)
            if other is not None and other is not service:
                problems.append(
                    lines.at(
                        ("services", service.name),
                        "port",
                        f"port {port} of {service.name!r} is already taken by "
                        f"{other.name!r} (line {other.line})",
                    )
                )
            taken.setdefault(key, service)


def _check_instances(
    services: list[Service], lines: _Lines, environ: Mapping[str, str], problems: list[str]
) -> None:
    for service in services:
        if service.instances < 2:
            continue
        for module in service.modules:
            url = environ.get(module_variable(module, "DATABASE_URL")) or service.database or ""
            if not url.startswith("postgres"):
                problems.append(
                    lines.at(
                        ("services", service.name),
                        "instances",
                        f"{service.instances} instances of {service.name!r} cannot share "
                        f"{module!r}'s SQLite file: set "
                        f"{module_variable(module, 'DATABASE_URL')} to a PostgreSQL URL",
                    )
                )


class _Lines:
    """Finds the line of a table or key in a topology's text, for error messages."""

    _HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self._lines: dict[tuple[tuple[str, ...], str | None], int] = {}
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                table = tuple(part.strip().strip('"') for part in header.group(1).split("."))
                self._lines.setdefault((table, None), number)
                continue
            key = self._KEY.match(line)
            if key:
                self._lines.setdefault((table, key.group(1)), number)

    def line(self, table: tuple[str, ...], key: str | None) -> int:
        found = self._lines.get((table, key))
        if found is None and key is not None:
            found = self._lines.get((table, None))
        return found or 0

    def at(self, table: tuple[str, ...], key: str | None, message: str) -> str:
        number = self.line(table, key)
        return f"{self.source}:{number}: {message}" if number else f"{self.source}: {message}"
