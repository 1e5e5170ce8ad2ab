"""One shop, five deployments, the same results: the monolith, split over HTTP, mixed over
HTTP, split over Redis queues, and mixed HTTP and Redis.

Each topology runs as real processes (``cleave up``'s code: a gateway and services or
dramatiq workers, each module with its own database, signed HTTP or Redis between them).
Hypothesis generates a workload of the shop's journey (customers register, an admin adds
products and stock, customers order with cards that pay, are declined or fail, and look at
their orders, stock and messages);
every deployment plays it through its public API, and every answer and the final state
(orders, stock, charges, notifications) must be the same everywhere. Ids differ between
deployments, so they are replaced by names in the order they first appear.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoints.up import Deployment
from tests.support.deployments import ADMIN_EMAIL, ADMIN_PASSWORD, deployed, logged_errors
from tests.support.shop_client import ShopClient

# Five deployments as real processes take about a minute to start and drive: a soak run
# (`.ci/run` runs it after the default run).
pytestmark = pytest.mark.soak

TOPOLOGIES = ["monolith", "split-http", "mixed", "split-redis", "mixed-redis"]
SKUS = ["TEA", "POT", "CUP"]
TOKENS = ["tok_ok", "tok_ok", "tok_ok", "tok_declined", "tok_error"]
_examples = itertools.count()

step = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 2)),
    st.tuples(st.just("product"), st.sampled_from(SKUS), st.integers(0, 5_000)),
    st.tuples(st.just("restock"), st.sampled_from(SKUS), st.integers(-1, 6)),
    st.tuples(
        st.just("order"),
        st.integers(0, 2),
        st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 4)), min_size=1, max_size=2),
        st.sampled_from(TOKENS),
    ),
    st.tuples(st.just("stock"), st.sampled_from(SKUS)),
    st.tuples(st.just("orders"), st.integers(0, 2)),
)


@pytest.fixture(scope="module")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Deployment]]:
    directory = tmp_path_factory.mktemp("deployments")
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(deployed(name, directory)) for name in TOPOLOGIES}


class Names:
    """Replaces the ids a deployment made up by names given in order of appearance."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def learn(self, kind: str, value: str) -> None:
        self._names.setdefault(value, f"<{kind}{len(self._names)}>")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            if isinstance(value.get("id"), str):
                self.learn("id", value["id"])  # a charge, a notification...
            return {k: self(v) for k, v in sorted(value.items()) if k not in _VOLATILE}
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, str):
            for raw, name in self._names.items():
                value = value.replace(raw, name).replace(raw[:8], name)
            return value
        return value


#: Fields that are different on every run by nature (time, secrets, the provider's ids).
_VOLATILE = {"created_at", "access_token", "provider_charge_id", "expires_in"}


def play(deployment: Deployment, workload: list[tuple[Any, ...]], tag: str) -> list[Any]:
    """Play ``workload`` against one deployment; what it answered, and its final state."""
    shop = ShopClient(deployment.gateway_url)
    names = Names()
    seen: list[Any] = []
    try:
        admin = shop.log_in(ADMIN_EMAIL, ADMIN_PASSWORD)
        customers: dict[int, str] = {}
        orders: list[tuple[str, str]] = []
        for action, *args in workload:
            if action == "register":
                email = f"{tag}-c{args[0]}@example.com"
                answer = shop.register(email, f"Customer {args[0]}")
                if answer.status == 201:
                    names.learn("user", answer.body["id"])
                    customers[args[0]] = shop.log_in(email)
            elif action == "product":
                answer = shop.add_product(admin, f"{tag}-{args[0]}", args[1])
            elif action == "restock":
                answer = shop.restock(admin, f"{tag}-{args[0]}", args[1])
            elif action == "order":
                token = customers.get(args[0])
                if token is None:
                    continue
                lines = [(f"{tag}-{sku}", quantity) for sku, quantity in args[1]]
                answer = shop.place_order(token, lines, args[2])
                if answer.status == 202:
                    names.learn("order", answer.body["id"])
                    orders.append((token, answer.body["id"]))
                    # A client waits for the outcome: the next step sees settled stock.
                    seen.append(("settled", names(shop.settled(token, answer.body["id"]))))
            elif action == "stock":
                answer = shop.call("GET", f"/api/v1/inventory/{tag}-{args[0]}")
            else:
                token = customers.get(args[0])
                if token is None:
                    continue
                answer = shop.call("GET", "/api/v1/orders", token)
            seen.append((action, answer.status, names(answer.body)))
        seen.extend(final_state(shop, admin, customers, orders, tag, names))
    finally:
        shop.close()
    return seen


def final_state(
    shop: ShopClient,
    admin: str,
    customers: dict[int, str],
    orders: list[tuple[str, str]],
    tag: str,
    names: Names,
) -> list[Any]:
    state: list[Any] = []
    for token, order_id in orders:
        state.append(("order", names(shop.settled(token, order_id))))
        charges = shop.call("GET", f"/api/v1/payments/{order_id}", admin)
        state.append(("charges", charges.status, names(charges.body)))
    for sku in SKUS:
        stock = shop.call("GET", f"/api/v1/inventory/{tag}-{sku}")
        state.append(("stock", stock.status, names(stock.body)))
    for number, token in sorted(customers.items()):
        placed = sum(1 for owner, _ in orders if owner == token)
        # A welcome, and one message per order once it ended; they come from events.
        notes = shop.eventually("/api/v1/notifications", token, 1 + placed, within=10)
        state.append(("notifications", number, sorted(_message(names(n)) for n in notes)))
    return state


def _message(note: dict[str, Any]) -> str:
    body = re.sub(r"\s+", " ", note["body"])
    return f"{note.get('order_id')}: {note['subject']}: {body}"


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(workload=st.lists(step, min_size=3, max_size=16))
def test_every_deployment_gives_the_same_results(
    deployments: dict[str, Deployment], workload: list[tuple[Any, ...]]
) -> None:
    tag = f"x{next(_examples)}"
    # Every example opens the shop, so that most of what follows has something to act on.
    workload = [("register", 0), ("product", "TEA", 450), ("restock", "TEA", 4), *workload]
    results = {name: play(deployment, workload, tag) for name, deployment in deployments.items()}
    reference = results["monolith"]
    for name, observed in results.items():
        for index, (expected, got) in enumerate(zip(reference, observed, strict=True)):
            assert got == expected, (
                f"{name} differs from the monolith at step {index}\n"
                + logged_errors(deployments[name])
            )


@pytest.mark.slow
def test_the_journey_ends_the_same_in_every_deployment(
    deployments: dict[str, Deployment],
) -> None:
    """The fixed journey of the README: a paid, a declined, a failed and a rejected order."""
    workload: list[tuple[Any, ...]] = [
        ("register", 0),
        ("product", "TEA", 450),
        ("product", "POT", 3200),
        ("restock", "TEA", 5),
        ("restock", "POT", 1),
        ("order", 0, [("TEA", 2)], "tok_ok"),
        ("order", 0, [("POT", 1)], "tok_declined"),
        ("order", 0, [("TEA", 1)], "tok_error"),
        ("order", 0, [("POT", 2)], "tok_ok"),
        ("stock", "TEA"),
        ("orders", 0),
    ]
    results = {name: play(d, workload, "journey") for name, d in deployments.items()}
    settled = [entry[1]["status"] for entry in results["monolith"] if entry[0] == "settled"]
    assert settled == ["CONFIRMED", "CANCELLED", "CANCELLED", "REJECTED"]
    for name, observed in results.items():
        assert observed == results["monolith"], f"{name}\n{logged_errors(deployments[name])}"
