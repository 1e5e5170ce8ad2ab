"""The deployment files rendered from a topology: valid Kubernetes, a Compose file that says
what the topology says, no secret in any file, and checked-in files that are fresh."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.cli import main
from entrypoints.deploy import (
    SECRET_NAME,
    render_compose,
    render_files,
    render_kubernetes,
    render_secret_template,
    topology_path_in_image,
)
from entrypoints.topology import Topology, load_topology, module_variable, parse_topology

ROOT = Path(__file__).resolve().parents[3]
TOPOLOGIES = sorted((ROOT / "topologies").glob("*.toml"))
#: A recent Kubernetes that kubernetes-validate ships schemas for (offline).
K8S_VERSION = "1.33"
IMAGE = "registry.example/cleave:1"
MODULES = list(SHOP_PACKAGES)

#: payments reached over Redis (a worker); inventory twice, on PostgreSQL.
REDIS_AND_REPLICAS = """
name = "scaled"
[services.gateway]
public = true
port = 8000
modules = ["identity", "catalog", "ordering", "notifications"]
[services.inventory]
modules = ["inventory"]
port = 8100
instances = 3
database = "postgresql://db.internal/inventory"
[services.payments]
modules = ["payments"]
transport = "redis"
"""


def load(path: Path) -> Topology:
    return load_topology(path, MODULES, environ={})


def scaled() -> Topology:
    return parse_topology(REDIS_AND_REPLICAS, "scaled.toml", MODULES, environ={})


def every_topology() -> list[Topology]:
    return [load(path) for path in TOPOLOGIES] + [scaled()]


def ids(topologies: list[Topology]) -> list[str]:
    return [topology.name for topology in topologies]


def compose_of(topology: Topology) -> dict[str, Any]:
    rendered = render_compose(topology, "/app/topologies/x.toml", IMAGE)
    # What Compose reads is the YAML text, so test that.
    loaded: dict[str, Any] = yaml.safe_load(yaml.safe_dump(rendered))
    return loaded


def kubernetes_of(topology: Topology) -> list[dict[str, Any]]:
    return render_kubernetes(topology, "/app/topologies/x.toml", IMAGE, "shop")


def containers(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]["containers"][0]
        for m in manifests
        if m["kind"] == "Deployment"
    }


# -- Kubernetes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", every_topology(), ids=ids(every_topology()))
def test_kubernetes_manifests_are_valid(topology: Topology) -> None:
    manifests = [*kubernetes_of(topology), render_secret_template(topology, "shop")]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


@pytest.mark.parametrize("topology", every_topology(), ids=ids(every_topology()))
def test_every_service_is_probed_and_every_http_service_reachable(topology: Topology) -> None:
    manifests = kubernetes_of(topology)
    services = {m["metadata"]["name"] for m in manifests if m["kind"] == "Service"}
    for name, container in containers(manifests).items():
        service = topology.service(name)
        # Workers serve their health probes too (cleave worker --port), but take no calls.
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        if service.transport == "redis" and not service.public:
            assert name not in services
            assert container["args"][:2] == ["worker", name]
            assert container["args"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]
            continue
        assert container["args"][:2] == ["serve", name]
        assert name in services
        for variable in container["env"]:
            if variable["name"].endswith("_URL") and "value" in variable:
                host = re.fullmatch(r"http://([a-z0-9-]+):8000", variable["value"])
                assert host is not None and host.group(1) in services, variable


@pytest.mark.parametrize("topology", every_topology(), ids=ids(every_topology()))
def test_secrets_come_from_the_secret_and_the_template_has_every_key(topology: Topology) -> None:
    template = render_secret_template(topology, "shop")
    assert set(template["stringData"].values()) == {"REPLACE-ME"}
    for name, container in containers(kubernetes_of(topology)).items():
        env = {variable["name"]: variable for variable in container["env"]}
        service = topology.service(name)
        required = ["CLEAVE_JWT_SECRET", "CLEAVE_SERVICE_KEY"]
        required += [module_variable(m, "DATABASE_URL") for m in service.modules]
        if "payments" in service.modules:
            required.append("CLEAVE_PAYMENT_PROVIDER_KEY")
        for variable in required:
            reference = env[variable]["valueFrom"]["secretKeyRef"]
            assert reference["name"] == SECRET_NAME
            assert reference["key"] in template["stringData"]
        assert env["CLEAVE_ENV"]["value"] == "production"
        pod = {"runAsNonRoot": True}
        assert pod.items() <= _pod(kubernetes_of(topology), name)["securityContext"].items()
        assert {"requests", "limits"} <= container["resources"].keys()


def _pod(manifests: list[dict[str, Any]], name: str) -> dict[str, Any]:
    deployment = next(
        m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == name
    )
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


# -- Compose --------------------------------------------------------------------------------------


@pytest.mark.parametrize("topology", every_topology(), ids=ids(every_topology()))
def test_compose_says_what_the_topology_says(topology: Topology) -> None:
    compose = compose_of(topology)["services"]
    for service in topology.services:
        entry = compose[service.name]
        environment = entry["environment"]
        assert entry["image"] == IMAGE
        assert environment["CLEAVE_ENV"] == "production"
        for module in service.modules:
            assert module_variable(module, "DATABASE_URL") in environment
        for module in MODULES:
            host = topology.host_of(module)
            if host is not None and host is not service and host.transport == "http":
                assert environment[module_variable(module, "URL")] == f"http://{host.name}:8000"
        if service.transport == "http" or service.public:
            assert entry["command"] == [
                "serve",
                service.name,
                "--topology",
                "/app/topologies/x.toml",
                "--host",
                "0.0.0.0",
                "--port",
                "8000",
            ]
            assert "/health/ready" in " ".join(entry["healthcheck"]["test"])
        else:
            assert entry["command"][:2] == ["worker", service.name]
        assert ("ports" in entry) == service.public


@pytest.mark.parametrize("topology", every_topology(), ids=ids(every_topology()))
def test_every_service_migrates_its_databases_before_it_starts(topology: Topology) -> None:
    # Rendered services run with CLEAVE_ENV=production, which refuses a database behind.
    upgrade = ["db", "upgrade"]
    compose = compose_of(topology)["services"]
    pods = {
        m["metadata"]["name"]: m["spec"]["template"]["spec"]
        for m in kubernetes_of(topology)
        if m["kind"] == "Deployment"
    }
    for service in topology.services:
        wanted = [*upgrade, service.name, "--topology", "/app/topologies/x.toml"]
        if not service.modules:
            assert "initContainers" not in pods[service.name]
            continue
        (init,) = pods[service.name]["initContainers"]
        assert init["args"] == wanted
        assert init["env"] == pods[service.name]["containers"][0]["env"]
        migrator = compose[f"{service.name}-migrate"]
        assert migrator["command"] == wanted
        assert migrator["environment"] == compose[service.name]["environment"]
        assert migrator.get("volumes") == compose[service.name].get("volumes")
        assert compose[service.name]["depends_on"][f"{service.name}-migrate"] == {
            "condition": "service_completed_successfully"
        }


@pytest.mark.parametrize("topology", every_topology(), ids=ids(every_topology()))
def test_every_address_points_at_a_service_that_hosts_the_module(topology: Topology) -> None:
    compose = compose_of(topology)["services"]
    for entry in compose.values():
        for variable, value in entry.get("environment", {}).items():
            found = re.fullmatch(r"CLEAVE_([A-Z]+)_URL", variable)
            if found is None or found.group(1) not in {m.upper() for m in MODULES}:
                continue  # CLEAVE_REDIS_URL, CLEAVE_PAYMENT_PROVIDER_URL
            module = found.group(1).lower()
            host = re.fullmatch(r"http://([a-z0-9-]+):8000", value)
            assert host is not None, (variable, value)
            assert module in topology.service(host.group(1)).modules
            assert host.group(1) in compose


@pytest.mark.parametrize("topology", every_topology(), ids=ids(every_topology()))
def test_compose_holds_no_secret(topology: Topology) -> None:
    compose = compose_of(topology)
    for entry in compose["services"].values():
        for variable, value in entry.get("environment", {}).items():
            if re.search(r"SECRET|KEY|PASSWORD", variable):
                assert re.fullmatch(r"\$\{[A-Z_]+:[?-][^}]*\}", value), (variable, value)
            if "postgresql" in value:
                assert "${CLEAVE_POSTGRES_PASSWORD:?" in value


def test_the_gateway_publishes_8000() -> None:
    for path in TOPOLOGIES:
        topology = load(path)
        assert topology.gateway is not None
        gateway = compose_of(topology)["services"][topology.gateway.name]
        assert gateway["ports"] == ["8000:8000"]
        others = [s.name for s in topology.services if not s.public]
        assert set(others) <= set(gateway.get("depends_on", {}))


def test_instances_become_replicas_on_postgres() -> None:
    topology = scaled()
    compose = compose_of(topology)
    inventory = compose["services"]["inventory"]
    assert inventory["deploy"]["replicas"] == 3
    assert inventory["environment"]["CLEAVE_INVENTORY_DATABASE_URL"].startswith("postgresql")
    assert inventory["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert 'CREATE DATABASE "inventory"' in compose["configs"]["postgres-init"]["content"]
    assert "volumes" not in inventory  # no SQLite file to keep
    deployments = {
        m["metadata"]["name"]: m for m in kubernetes_of(topology) if m["kind"] == "Deployment"
    }
    assert deployments["inventory"]["spec"]["replicas"] == 3
    assert deployments["gateway"]["spec"]["replicas"] == 1


def test_a_redis_topology_gets_redis() -> None:
    compose = compose_of(scaled())
    assert compose["services"]["redis"]["image"].startswith("redis:")
    for name in ("gateway", "inventory", "payments"):
        entry = compose["services"][name]
        assert entry["environment"]["CLEAVE_REDIS_URL"] == "redis://redis:6379/0"
        assert entry["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert "CLEAVE_PAYMENTS_URL" not in compose["services"]["gateway"]["environment"]
    assert "/health/ready" in " ".join(compose["services"]["payments"]["healthcheck"]["test"])
    for path in TOPOLOGIES:
        topology = load(path)
        queues = any(service.transport == "redis" for service in topology.services)
        assert ("redis" in compose_of(topology)["services"]) == queues, path


# -- the command and the checked-in files ---------------------------------------------------------


def test_the_command_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topology = str(ROOT / "topologies" / "split-http.toml")
    assert main(["deploy", "render", "--target", "compose", topology, "--out", str(tmp_path)]) == 0
    compose = yaml.safe_load((tmp_path / "compose.yaml").read_text())
    assert compose["services"]["gateway"]["command"][3] == "/app/topologies/split-http.toml"
    assert main(["deploy", "render", "--target", "k8s", topology, "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "secret.template.yaml").exists()
    arguments = ["deploy", "render", "--target", "k8s", topology, "--out", str(tmp_path / "k")]
    assert main([*arguments, "--with-secret-template", "--namespace", "n", "--image", "i:1"]) == 0
    documents = list(yaml.safe_load_all((tmp_path / "k" / "k8s.yaml").read_text()))
    assert {d["metadata"].get("namespace", "n") for d in documents} == {"n"}
    assert containers(documents)["gateway"]["image"] == "i:1"
    assert (tmp_path / "k" / "secret.template.yaml").exists()
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'compose.yaml'}" in printed
    assert f"wrote {tmp_path / 'k' / 'secret.template.yaml'}" in printed


@pytest.mark.parametrize("path", TOPOLOGIES, ids=[path.stem for path in TOPOLOGIES])
def test_the_checked_in_files_are_fresh(path: Path) -> None:
    """deploy/<topology>/ documents the real deployment; after changing a topology or the
    renderer, run `cleave deploy render` again (deploy/README.md)."""
    topology = load(path)
    where = topology_path_in_image(path)
    files = {
        **render_files(topology, "compose", topology_path=where),
        **render_files(topology, "k8s", topology_path=where, with_secret_template=True),
    }
    directory = ROOT / "deploy" / topology.name
    for name, text in files.items():
        assert (directory / name).read_text(encoding="utf-8") == text, (
            f"{directory / name} is stale: run cleave deploy render for {path.name}"
        )
