"""A deployment's processes are the ones it started: a port held by another process stops
the start with the reason, and a module reached at the wrong service is a 502, not a 500.

A CI run once handed two services of one deployment the same free port: one could not bind
it, the other answered the readiness probe in its place, and every request of the dead one's
module went to a service that does not host it (500 on each, for the whole run).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.topology import load_topology
from entrypoints.up import Deployment, free_ports
from kernel.errors import ConfigurationError
from tests.support.deployments import TEST_ENVIRONMENT, topology_file
from tests.support.shop_client import ShopClient

pytestmark = pytest.mark.slow


def mixed(tmp_path: Path, ports: dict[str, int], **environment: str) -> Deployment:
    path = topology_file("mixed")
    environ = {
        **os.environ,
        **TEST_ENVIRONMENT,
        **environment,
        "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
    }
    topology = load_topology(path, list(SHOP_PACKAGES), environ)
    return Deployment(
        topology, path, environ=environ, data_dir=tmp_path, ports=ports, say=lambda line: None
    )


def test_free_ports_are_never_handed_out_twice() -> None:
    # The OS gives a port it just released to the next probe now and then (about 2 in 300
    # probes here): each of these is used by a different process.
    ports = [free_ports(1) for _ in range(600)]
    assert len(set(ports)) == len(ports)


def test_a_port_that_another_process_holds_stops_the_start(tmp_path: Path) -> None:
    shared = free_ports(1)
    deployment = mixed(tmp_path, {"gateway": free_ports(1), "stock": shared, "checkout": shared})
    with pytest.raises(ConfigurationError, match=f"another process answers on port {shared}"):
        deployment.start()
    assert not any(child.running() for child in deployment.children)


def test_a_module_reached_at_a_service_that_does_not_host_it_is_a_502(tmp_path: Path) -> None:
    ports = {"gateway": free_ports(1), "stock": free_ports(1), "checkout": free_ports(1)}
    # Ordering's address is the stock service's: a topology and its environment disagree.
    wrong = f"http://127.0.0.1:{ports['stock']}"
    deployment = mixed(tmp_path, ports, CLEAVE_ORDERING_URL=wrong)
    deployment.start()
    try:
        with ShopClient(deployment.gateway_url) as shop:
            shop.register("misrouted@example.com", "Misrouted")
            token = shop.log_in("misrouted@example.com")
            answer = shop.call("GET", "/api/v1/orders", token)
            assert answer.status == 502, answer
            assert answer.body["code"] == "upstream_refused"
            # The rest of the shop still answers.
            assert shop.call("GET", "/api/v1/catalog/products").status == 200
    finally:
        deployment.stop(grace=5)
