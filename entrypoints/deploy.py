"""Deployment files rendered from a topology: a Compose file and Kubernetes manifests.

Every process runs the one image of ``deploy/Dockerfile``; its command picks the role
(``serve <service>`` for an HTTP service, ``worker <service>`` for one reached over Redis).
Inside containers every HTTP service listens on 8000, so a module's address is
``http://<service>:8000``. ``instances`` become replicas behind that one name (Compose
``deploy.replicas``, a Kubernetes Deployment's ``replicas``): the orchestrator spreads the
connections, and scaling needs no new file.

Compose keeps a single-instance service's modules in SQLite files on a named volume and
runs PostgreSQL (one database per module) for a service with several instances. Kubernetes
reads every database URL, and every other secret, from the Secret ``cleave-secrets``.
Secrets never appear in a rendered file: Compose interpolates ``${VAR:?...}`` from the
environment or ``.env``; Kubernetes refers to the Secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from entrypoints.topology import Service, Topology, module_variable

Manifest = dict[str, Any]
Target = Literal["compose", "k8s"]

CONTAINER_PORT = 8000
DEFAULT_IMAGE = "cleave:latest"
DEFAULT_NAMESPACE = "cleave"
SECRET_NAME = "cleave-secrets"
IMAGE_TOPOLOGIES = PurePosixPath("/app/topologies")
DATA_DIR = "/data"
REDIS_IMAGE = "redis:7-alpine"
POSTGRES_IMAGE = "postgres:16-alpine"
POSTGRES_PASSWORD = "${CLEAVE_POSTGRES_PASSWORD:?set CLEAVE_POSTGRES_PASSWORD (URL-safe)}"
COMPOSE_REDIS_URL = "redis://redis:6379/0"
PLACEHOLDER = "REPLACE-ME"
#: The user of the image (``deploy/Dockerfile``).
USER_ID = 10001

_READY = f"http://127.0.0.1:{CONTAINER_PORT}/health/ready"
_HEADER = (
    "# Rendered from topology {name} by `cleave deploy render --target {target}`.\n"
    "# Do not edit: change the topology and render again (deploy/README.md).\n"
)


# -- what every target shares -------------------------------------------------------------------


def is_worker(service: Service) -> bool:
    """Whether ``service`` runs as a Redis worker (``cleave worker``) rather than HTTP."""
    return service.transport == "redis" and not service.public


def uses_redis(topology: Topology) -> bool:
    return any(service.transport == "redis" for service in topology.services)


def needs_postgres(service: Service) -> bool:
    """Several instances cannot share a SQLite file; a service may also ask for PostgreSQL."""
    return service.instances > 1 or (service.database or "").startswith("postgres")


def address(service: Service) -> str:
    """The base URL of ``service`` inside the cluster."""
    return f"http://{service.name}:{CONTAINER_PORT}"


def topology_path_in_image(path: str | Path) -> str:
    """Where the image keeps a topology file of the repository's ``topologies/``."""
    return str(IMAGE_TOPOLOGIES / Path(path).name)


def command(service: Service, topology_path: str) -> list[str]:
    """The container's arguments (the image's entrypoint is ``cleave``)."""
    return [
        "worker" if is_worker(service) else "serve",
        service.name,
        "--topology",
        topology_path,
        "--host",
        "0.0.0.0",
        "--port",
        str(CONTAINER_PORT),
    ]


def migrate_command(service: Service, topology_path: str) -> list[str]:
    """Arguments that migrate the databases of ``service``'s modules (run before it starts:
    in production a service refuses a database that is behind)."""
    return ["db", "upgrade", service.name, "--topology", topology_path]


def migrator_name(service: Service) -> str:
    return f"{service.name}-migrate"


def module_addresses(topology: Topology, service: Service) -> dict[str, str]:
    """``CLEAVE_<MODULE>_URL`` of every module that ``service`` reaches over HTTP."""
    found = {}
    for other in topology.services:
        if other is service or other.transport != "http":
            continue
        for module in other.modules:
            found[module_variable(module, "URL")] = address(other)
    return found


def _plain_environment(topology: Topology, service: Service) -> dict[str, str]:
    return {"CLEAVE_ENV": "production", **module_addresses(topology, service)}


# -- Compose --------------------------------------------------------------------------------------


def render_compose(topology: Topology, topology_path_in_image: str, image: str) -> Manifest:
    """A Compose file running ``topology`` from ``image``."""
    services: Manifest = {}
    volumes: Manifest = {}
    for service in topology.services:
        services[service.name] = _compose_service(topology, service, topology_path_in_image, image)
        if service.modules:
            services[migrator_name(service)] = _compose_migrator(
                topology, service, topology_path_in_image, image
            )
        if _sqlite_volume(service):
            volumes[_sqlite_volume(service)] = {}
    postgres = [m for s in topology.services if needs_postgres(s) for m in s.modules]
    compose: Manifest = {"name": f"cleave-{topology.name}", "services": services}
    if postgres:
        services["postgres"] = _compose_postgres()
        volumes["postgres-data"] = {}
        compose["configs"] = {"postgres-init": {"content": _create_databases(postgres)}}
    if uses_redis(topology):
        services["redis"] = _compose_redis()
        volumes["redis-data"] = {}
    if volumes:
        compose["volumes"] = volumes
    return compose


def _compose_service(
    topology: Topology, service: Service, topology_path: str, image: str
) -> Manifest:
    entry: Manifest = {
        "image": image,
        "command": command(service, topology_path),
        "restart": "unless-stopped",
        "stop_grace_period": "20s",
        "environment": _compose_environment(topology, service),
    }
    entry["healthcheck"] = _compose_healthcheck()
    if service.public:
        entry["ports"] = [_published_ports(service)]
    if service.instances > 1:
        entry["deploy"] = {"replicas": service.instances}
    if _sqlite_volume(service):
        entry["volumes"] = [f"{_sqlite_volume(service)}:{DATA_DIR}"]
    depends_on = _compose_depends_on(topology, service)
    if depends_on:
        entry["depends_on"] = depends_on
    return entry


def _compose_migrator(
    topology: Topology, service: Service, topology_path: str, image: str
) -> Manifest:
    """A one-off container that migrates ``service``'s databases; the service waits for it."""
    entry: Manifest = {
        "image": image,
        "command": migrate_command(service, topology_path),
        "restart": "no",
        "environment": _compose_environment(topology, service),
    }
    if _sqlite_volume(service):
        entry["volumes"] = [f"{_sqlite_volume(service)}:{DATA_DIR}"]
    if needs_postgres(service):
        entry["depends_on"] = {"postgres": {"condition": "service_healthy"}}
    return entry


def _compose_environment(topology: Topology, service: Service) -> dict[str, str]:
    environment = {
        **_plain_environment(topology, service),
        "CLEAVE_JWT_SECRET": _required("CLEAVE_JWT_SECRET", "32+ random bytes"),
        "CLEAVE_SERVICE_KEY": _required("CLEAVE_SERVICE_KEY", "32+ random bytes"),
    }
    for module in service.modules:
        environment[module_variable(module, "DATABASE_URL")] = _compose_database(service, module)
    if uses_redis(topology):
        environment["CLEAVE_REDIS_URL"] = COMPOSE_REDIS_URL
    if "payments" in service.modules:
        environment["CLEAVE_PAYMENT_PROVIDER_URL"] = _required(
            "CLEAVE_PAYMENT_PROVIDER_URL", "the payment provider"
        )
        environment["CLEAVE_PAYMENT_PROVIDER_KEY"] = _required(
            "CLEAVE_PAYMENT_PROVIDER_KEY", "its API key"
        )
    if "identity" in service.modules:
        environment["CLEAVE_ADMIN_EMAIL"] = "${CLEAVE_ADMIN_EMAIL:-}"
        environment["CLEAVE_ADMIN_PASSWORD"] = "${CLEAVE_ADMIN_PASSWORD:-}"
    return environment


def _required(variable: str, what: str) -> str:
    """Compose interpolation that refuses to start without ``variable``."""
    return f"${{{variable}:?set {variable} ({what})}}"


def _compose_database(service: Service, module: str) -> str:
    if needs_postgres(service):
        return f"postgresql+asyncpg://cleave:{POSTGRES_PASSWORD}@postgres:5432/{module}"
    # A service that names one SQLite file for its modules keeps that file's name.
    shared = service.database or ""
    name = shared.rsplit("/", 1)[-1] if shared.startswith("sqlite") else f"{module}.db"
    return f"sqlite+aiosqlite:///{DATA_DIR}/{name}"


def _sqlite_volume(service: Service) -> str:
    """The named volume of a service that keeps SQLite files ("" when it keeps none)."""
    if not service.modules or needs_postgres(service):
        return ""
    return f"{service.name}-data"


def _published_ports(service: Service) -> str:
    if service.instances == 1:
        return f"{CONTAINER_PORT}:{CONTAINER_PORT}"
    last = CONTAINER_PORT + service.instances - 1
    return f"{CONTAINER_PORT}-{last}:{CONTAINER_PORT}"


def _compose_healthcheck() -> Manifest:
    # The image has Python and no curl: urlopen raises (exit 1) unless /health/ready says 200.
    probe = f"import urllib.request; urllib.request.urlopen('{_READY}', timeout=4)"
    return {
        "test": ["CMD", "python", "-c", probe],
        "interval": "10s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "30s",
    }


def _compose_depends_on(topology: Topology, service: Service) -> Manifest:
    """Backing services first; the gateway after every other service of the topology."""
    depends_on: Manifest = {}
    if service.modules:
        depends_on[migrator_name(service)] = {"condition": "service_completed_successfully"}
    if needs_postgres(service):
        depends_on["postgres"] = {"condition": "service_healthy"}
    if uses_redis(topology):
        depends_on["redis"] = {"condition": "service_healthy"}
    if service.public:
        for other in topology.services:
            if other is not service:
                depends_on[other.name] = {"condition": "service_healthy"}
    return depends_on


def _compose_postgres() -> Manifest:
    return {
        "image": POSTGRES_IMAGE,
        "restart": "unless-stopped",
        "environment": {
            "POSTGRES_USER": "cleave",
            "POSTGRES_PASSWORD": POSTGRES_PASSWORD,
            "POSTGRES_DB": "cleave",
        },
        "configs": [
            {"source": "postgres-init", "target": "/docker-entrypoint-initdb.d/cleave.sql"}
        ],
        "volumes": ["postgres-data:/var/lib/postgresql/data"],
        # Over TCP: while the init scripts run, the server listens on its socket only.
        "healthcheck": {
            "test": ["CMD", "pg_isready", "-h", "127.0.0.1", "-U", "cleave", "-d", "cleave"],
            "interval": "5s",
            "timeout": "5s",
            "retries": 10,
        },
    }


def _create_databases(modules: list[str]) -> str:
    return "\n".join(f'CREATE DATABASE "{module}";' for module in modules)


def _compose_redis() -> Manifest:
    return {
        "image": REDIS_IMAGE,
        "restart": "unless-stopped",
        "command": ["redis-server", "--appendonly", "yes"],
        "volumes": ["redis-data:/data"],
        "healthcheck": {
            "test": ["CMD", "redis-cli", "ping"],
            "interval": "5s",
            "timeout": "5s",
            "retries": 10,
        },
    }


# -- Kubernetes -----------------------------------------------------------------------------------


def render_kubernetes(
    topology: Topology, topology_path_in_image: str, image: str, namespace: str
) -> list[Manifest]:
    """The Namespace, then a Deployment per service and a Service per HTTP service."""
    manifests: list[Manifest] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    ]
    for service in topology.services:
        manifests.append(_deployment(topology, service, topology_path_in_image, image, namespace))
        if not is_worker(service):
            manifests.append(_k8s_service(topology, service, namespace))
    return manifests


def render_secret_template(topology: Topology, namespace: str) -> Manifest:
    """The Secret the Deployments read, every value a placeholder to replace."""
    keys = sorted({key for s in topology.services for key in _secret_keys(topology, s)})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": _labels(topology)},
        "type": "Opaque",
        "stringData": dict.fromkeys(keys, PLACEHOLDER),
    }


def _labels(topology: Topology, service: Service | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/part-of": "cleave", "cleave.dev/topology": topology.name}
    if service is not None:
        labels["app.kubernetes.io/component"] = service.name
    return labels


def _selector(service: Service) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "cleave", "app.kubernetes.io/component": service.name}


def _metadata(topology: Topology, service: Service, namespace: str) -> Manifest:
    return {"name": service.name, "namespace": namespace, "labels": _labels(topology, service)}


def _deployment(
    topology: Topology, service: Service, topology_path: str, image: str, namespace: str
) -> Manifest:
    metadata = _metadata(topology, service, namespace)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": service.instances,
            "selector": {"matchLabels": _selector(service)},
            "template": {
                "metadata": {"labels": _labels(topology, service)},
                "spec": _pod_spec(topology, service, topology_path, image),
            },
        },
    }


def _pod_spec(topology: Topology, service: Service, topology_path: str, image: str) -> Manifest:
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Each pod migrates its service's databases before it starts; replicas doing so at
        # once wait for each other (the migration holds a database lock).
        **(
            {"initContainers": [_migrator(topology, service, topology_path, image)]}
            if service.modules
            else {}
        ),
        "containers": [_container(topology, service, topology_path, image)],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }


def _migrator(topology: Topology, service: Service, topology_path: str, image: str) -> Manifest:
    container = _container(topology, service, topology_path, image)
    for served in ("ports", "readinessProbe", "livenessProbe"):
        container.pop(served, None)
    container.update(name="migrate", args=migrate_command(service, topology_path))
    return container


def _container(topology: Topology, service: Service, topology_path: str, image: str) -> Manifest:
    container: Manifest = {
        "name": "cleave",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": command(service, topology_path),
        "env": _k8s_environment(topology, service),
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    # A worker serves its health probes on the same port (nothing else: it has no Service).
    container["ports"] = [{"name": "http", "containerPort": CONTAINER_PORT}]
    container.update(_probes())
    return container


def _probes() -> Manifest:
    def get(path: str) -> Manifest:
        return {"httpGet": {"path": path, "port": "http"}}

    return {
        # Start-up creates missing tables: up to a minute before liveness counts.
        "startupProbe": {**get("/health/live"), "periodSeconds": 2, "failureThreshold": 30},
        "livenessProbe": {**get("/health/live"), "periodSeconds": 20, "failureThreshold": 3},
        "readinessProbe": {**get("/health/ready"), "periodSeconds": 10, "failureThreshold": 3},
    }


def _secret_keys(topology: Topology, service: Service) -> list[str]:
    keys = ["CLEAVE_JWT_SECRET", "CLEAVE_SERVICE_KEY"]
    keys += [module_variable(module, "DATABASE_URL") for module in service.modules]
    if "payments" in service.modules:
        keys += ["CLEAVE_PAYMENT_PROVIDER_URL", "CLEAVE_PAYMENT_PROVIDER_KEY"]
    if uses_redis(topology):
        keys.append("CLEAVE_REDIS_URL")
    return keys


def _k8s_environment(topology: Topology, service: Service) -> list[Manifest]:
    env: list[Manifest] = [
        {"name": name, "value": value}
        for name, value in _plain_environment(topology, service).items()
    ]
    env += [_from_secret(key) for key in _secret_keys(topology, service)]
    if "identity" in service.modules:
        # Optional keys: add them to the Secret to have an admin account ensured at start.
        env += [_from_secret(key, optional=True) for key in _ADMIN_KEYS]
    return env


_ADMIN_KEYS = ("CLEAVE_ADMIN_EMAIL", "CLEAVE_ADMIN_PASSWORD")


def _from_secret(key: str, *, optional: bool = False) -> Manifest:
    reference: Manifest = {"name": SECRET_NAME, "key": key}
    if optional:
        reference["optional"] = True
    return {"name": key, "valueFrom": {"secretKeyRef": reference}}


def _k8s_service(topology: Topology, service: Service, namespace: str) -> Manifest:
    # ClusterIP for the gateway too: expose it with an Ingress or a LoadBalancer of your own.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(topology, service, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(service),
            "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http"}],
        },
    }


# -- files ----------------------------------------------------------------------------------------


def render_files(
    topology: Topology,
    target: Target,
    *,
    topology_path: str,
    image: str = DEFAULT_IMAGE,
    namespace: str = DEFAULT_NAMESPACE,
    with_secret_template: bool = False,
) -> dict[str, str]:
    """The files of ``target``: name -> text (``compose.yaml``; ``k8s.yaml`` and, when
    asked, ``secret.template.yaml``, kept apart so that applying ``k8s.yaml`` never
    applies placeholders)."""
    header = _HEADER.format(name=topology.name, target=target)
    if target == "compose":
        return {"compose.yaml": header + _dump(render_compose(topology, topology_path, image))}
    manifests = render_kubernetes(topology, topology_path, image, namespace)
    files = {"k8s.yaml": header + _dump_all(manifests)}
    if with_secret_template:
        files["secret.template.yaml"] = (
            header
            + "# Replace every REPLACE-ME, then: kubectl apply -f secret.template.yaml\n"
            + _dump(render_secret_template(topology, namespace))
        )
    return files


def write_files(files: Mapping[str, str], directory: Path) -> list[Path]:
    """Write ``files`` into ``directory`` (created if missing); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _dump(document: Manifest) -> str:
    return yaml.safe_dump(document, sort_keys=False, width=4096)


def _dump_all(documents: list[Manifest]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False, width=4096)
