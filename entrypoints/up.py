"""``cleave up``: every process of a topology on this machine, started and stopped together.

The same code starts the deployments of the topology tests and the benchmarks, so what they
measure is what a user runs. Each process is a ``cleave serve`` child with its own log file;
the supervisor gives every child the addresses of every module (``CLEAVE_<MODULE>_URL``),
waits until each answers ``/health/ready``, and stops them all (SIGTERM, then SIGKILL after
the grace period) when it is interrupted or terminated. A child dies with its supervisor
(Linux's parent-death signal), so none is left behind even when the supervisor is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from entrypoints.topology import Service, Topology, default_data_dir, module_variable
from kernel.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[1]
READY = "/health/ready"
_PR_SET_PDEATHSIG = 1


#: The ports this process handed out. The OS may give a just-released port to the next
#: probe again; two children told the same port make one fail to bind while the other
#: answers its readiness probe in its place (a CI run saw ordering's requests go to another
#: service that way).
_handed_out: set[int] = set()


def free_ports(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive TCP ports nobody listens on right now and that
    this process has not handed out before."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((host, 0))
            first = int(probe.getsockname()[1])
        ports = range(first, first + count)
        if first + count >= 65535 or _handed_out.intersection(ports):
            continue
        if all(_free(host, port) for port in ports[1:]):
            _handed_out.update(ports)
            return first
    raise RuntimeError(f"no {count} consecutive free ports")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (see ``free_ports``)."""
    return free_ports(1, host)


def _free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One running process of the deployment."""

    label: str
    service: Service | None
    instance: int
    url: str
    command: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, characters: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-characters:]
        except OSError:
            return ""


class Deployment:
    """The processes of one topology on this machine."""

    def __init__(
        self,
        topology: Topology,
        topology_path: str | Path,
        *,
        environ: Mapping[str, str] | None = None,
        data_dir: Path | None = None,
        ports: Mapping[str, int] | None = None,
        say: Callable[[str], None] = print,
        start_timeout: float = 90.0,
    ) -> None:
        self.topology = topology
        self.topology_path = str(topology_path)
        base = dict(os.environ if environ is None else environ)
        self.data_dir = data_dir or default_data_dir(topology, base)
        self.log_dir = self.data_dir / "logs"
        #: Base port of each service (default: the topology's); instances count up from it.
        self.ports = {s.name: (ports or {}).get(s.name, s.port) for s in topology.services}
        self.say = say
        self.start_timeout = start_timeout
        self.environ = self._environment(base)
        self.children: list[Child] = []
        self.sandbox: Child | None = None
        #: Names this run's children (``instance_name``).
        self._run = secrets.token_hex(4)
        for service in topology.services:
            for instance in range(service.instances):
                self.children.append(self._child(service, instance))

    # -- the plan ---------------------------------------------------------------------------

    def url_of(self, service: Service, instance: int = 0) -> str:
        port = self.ports[service.name]
        return f"http://{service.host}:{(port or 0) + instance}" if port else ""

    @property
    def gateway_url(self) -> str:
        gateway = self.topology.gateway
        if gateway is None:
            raise ConfigurationError(f"{self.topology.source} has no public service")
        return self.url_of(gateway)

    def _environment(self, base: dict[str, str]) -> dict[str, str]:
        environ = dict(base)
        environ["CLEAVE_DATA_DIR"] = str(self.data_dir)
        for service in self.topology.services:
            if service.transport != "http":
                continue
            urls = ",".join(self.url_of(service, i) for i in range(service.instances))
            for module in service.modules:
                environ.setdefault(module_variable(module, "URL"), urls)
        # `cleave serve` refuses the public development secrets; a laptop deployment gets
        # fresh ones, shared by its processes, for as long as it runs.
        for variable in ("CLEAVE_JWT_SECRET", "CLEAVE_SERVICE_KEY"):
            if not environ.get(variable):
                environ[variable] = secrets.token_urlsafe(48)
        environ.setdefault("PYTHONUNBUFFERED", "1")
        return environ

    def _child(self, service: Service, instance: int) -> Child:
        label = service.name if service.instances == 1 else f"{service.name}-{instance + 1}"
        # A module reached over the broker runs as a worker of its queue; one that serves
        # the public API or HTTP calls runs as a web service.
        role = "worker" if service.transport == "redis" and not service.public else "serve"
        command = [
            sys.executable,
            "-m",
            "entrypoints.cli",
            role,
            service.name,
            "--topology",
            self.topology_path,
        ]
        url = self.url_of(service, instance)
        if url:
            command += ["--port", url.rsplit(":", 1)[1]]
        return Child(label, service, instance, url, command, self.log_dir / f"{label}.log")

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start every process and wait until each is ready; on failure stop them all."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            if not self.environ.get("CLEAVE_PAYMENT_PROVIDER_URL"):
                self._start_sandbox()
            # Services before the gateway, so that its first requests find them.
            for child in sorted(self.children, key=lambda c: bool(c.service and c.service.public)):
                self._spawn(child)
            self._wait_all_ready(self.children)
        except BaseException:
            self.stop(grace=5)
            raise

    def _start_sandbox(self) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "entrypoints.cli",
            "sandbox-provider",
            "--port",
            str(port),
        ]
        self.sandbox = Child("sandbox", None, 0, url, command, self.log_dir / "sandbox.log")
        self._spawn(self.sandbox)
        self._wait_ready(self.sandbox, "/v1/stats")
        self.environ["CLEAVE_PAYMENT_PROVIDER_URL"] = url

    def _spawn(self, child: Child) -> None:
        with child.log.open("ab") as log:
            child.popen = subprocess.Popen(
                child.command,
                cwd=ROOT,
                env={**self.environ, "CLEAVE_INSTANCE": self.instance_name(child)},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: Ctrl-C reaches the supervisor, which stops children in order.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

    def _wait_all_ready(self, children: list[Child]) -> None:
        """Wait for every child, saying each one as it becomes ready."""
        started = time.monotonic()
        end = started + self.start_timeout
        waiting = list(children)
        while waiting:
            for child in list(waiting):
                self._check_running(child)
                if not child.url or self._ready(child):
                    waiting.remove(child)
                    self._say_ready(child, time.monotonic() - started)
            if waiting and time.monotonic() > end:
                late = waiting[0]
                raise ConfigurationError(
                    f"{late.label} was not ready within {self.start_timeout:.0f}s; its log "
                    f"{late.log}:\n{late.tail()}"
                )
            time.sleep(0.1)

    def _check_running(self, child: Child) -> None:
        if not child.running():
            raise ConfigurationError(
                f"{child.label} exited while starting (status "
                f"{child.popen.returncode if child.popen else '?'}); its log "
                f"{child.log}:\n{child.tail()}"
            )

    def _ready(self, child: Child) -> bool:
        """Whether ``child`` says it is ready. The answer must carry the name this supervisor
        gave it: another process answering on its port (which it then cannot bind) is not
        taken for it."""
        body = _get(child.url + READY)
        if body is None:
            return False
        try:
            instance = msgspec.json.decode(body).get("instance")
        except (msgspec.DecodeError, AttributeError):
            instance = None
        if instance != self.instance_name(child):
            port = child.url.rsplit(":", 1)[1]
            raise ConfigurationError(
                f"{child.label}: another process answers on port {port} "
                f"(it says it is {instance!r}); {child.label} cannot have it. Its log "
                f"{child.log}:\n{child.tail()}"
            )
        return True

    def instance_name(self, child: Child) -> str:
        """What ``child`` is called in this run (``CLEAVE_INSTANCE``)."""
        return f"{child.label}@{self._run}"

    def _say_ready(self, child: Child, took: float) -> None:
        where = child.url or "worker"
        self.say(f"  ready  {child.label:<16} {where:<26} pid {child.pid}  {took:.1f}s")

    def _wait_ready(self, child: Child, path: str = READY) -> None:
        started = time.monotonic()
        end = started + self.start_timeout
        while time.monotonic() < end:
            self._check_running(child)
            if not child.url or (
                self._ready(child) if path == READY else _answers(child.url + path)
            ):
                self._say_ready(child, time.monotonic() - started)
                return
            time.sleep(0.1)
        raise ConfigurationError(
            f"{child.label} was not ready within {self.start_timeout:.0f}s; its log "
            f"{child.log}:\n{child.tail()}"
        )

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every process (the public one first), SIGKILL what is left after ``grace``."""
        order = sorted(self.children, key=lambda c: not (c.service and c.service.public))
        if self.sandbox is not None:
            order.append(self.sandbox)
        for child in order:
            if child.running():
                assert child.popen is not None
                child.popen.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace
        for child in order:
            if child.popen is None:
                continue
            try:
                child.popen.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait(timeout=10)

    def child(self, label: str) -> Child:
        for child in self.children:
            if label in (child.label, child.service.name if child.service else None):
                return child
        raise KeyError(label)

    def kill(self, label: str) -> None:
        """``kill -9`` one process: no shutdown of any kind."""
        child = self.child(label)
        if child.running():
            assert child.popen is not None
            child.popen.kill()
            child.popen.wait(timeout=30)

    def restart(self, label: str) -> None:
        """Start one (stopped or killed) process again and wait until it is ready."""
        child = self.child(label)
        if child.running():
            raise RuntimeError(f"{label} is still running")
        self._spawn(child)
        self._wait_ready(child)

    def watch(self) -> None:
        """Block until interrupted, saying when a process exits on its own."""
        reported: set[str] = set()
        while True:
            for child in [*self.children, *([self.sandbox] if self.sandbox else [])]:
                if child.popen is not None and not child.running() and child.label not in reported:
                    reported.add(child.label)
                    self.say(
                        f"  exited {child.label} with status {child.popen.returncode}; "
                        f"see {child.log}"
                    )
            time.sleep(0.5)


def _answers(url: str) -> bool:
    return _get(url) is not None


def _get(url: str) -> bytes | None:
    """The body of a 200 answer to GET ``url``; None for any other answer or none."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bytes(response.read()) if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def run_up(topology: Topology, path: str | Path, say: Callable[[str], None] = print) -> int:
    """``cleave up``: start, show each process as it becomes ready, stop on Ctrl-C/SIGTERM."""
    deployment = Deployment(topology, path, say=say)
    say(topology.plan(deployment.environ))
    say(f"logs in {deployment.log_dir}/")

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        deployment.start()
        say(f"the shop is up: {deployment.gateway_url} (Ctrl-C stops every process)")
        deployment.watch()
    except KeyboardInterrupt:
        say("stopping every process ...")
    finally:
        # A second signal must not cut the orderly stop short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(KeyboardInterrupt):
            deployment.stop()
        signal.signal(signal.SIGTERM, previous)
    say("stopped")
    return 0
