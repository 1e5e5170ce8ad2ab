"""The rules of the queue transport's worker that need no Redis: what a delivery's failure
means to dramatiq, how a request's shape is checked, how queues are named, what a worker
refuses to run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.bus.redis.actors import Final, Retryable, WorkerHost
from adapters.bus.redis.config import QueueConfig
from adapters.bus.redis.replies import Outcome, encode_outcome
from entrypoints.bootstrap import SHOP_PACKAGES, bootstrap
from entrypoints.settings import Settings
from entrypoints.topology import parse_topology
from entrypoints.worker import check_worker
from kernel.codec import Codec
from kernel.errors import ConfigurationError, NotFound, PoisonMessage, Unavailable
from kernel.messages import Envelope
from kernel.receiver import Receiver
from modules.catalog.contracts import GetProduct, ProductAdded
from modules.catalog.module import module as catalog

pytestmark = pytest.mark.anyio


class Pushed:
    """Stands in for the reply list: what the worker pushed, by key."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, Outcome]] = []

    async def push(self, key: str, outcome: Outcome) -> None:
        self.outcomes.append((key, outcome))

    def push_now(self, key: str, outcome: Outcome) -> None:
        self.outcomes.append((key, outcome))

    async def close(self) -> None:
        return None


class Scripted(Receiver):
    """A receiver whose deliveries answer what the test says."""

    def __init__(self, inner: Receiver, answer: BaseException | None) -> None:
        super().__init__(inner.dispatcher, inner.codec)
        self.answer = answer

    async def deliver(self, module: str, frame: bytes) -> bytes:
        if self.answer is None:
            return self.codec.encode_result(None)
        return self.codec.encode_error(self.answer)


def host_with(answer: BaseException | None) -> tuple[WorkerHost, Pushed]:
    runtime = bootstrap(database={}, settings=Settings(), modules=[catalog], hosted=[])
    assert runtime.receiver is not None
    pushed = Pushed()
    host = WorkerHost(hosted=None, modules=["catalog"], pusher=pushed)  # type: ignore[arg-type]
    host.receiver = Scripted(runtime.receiver, answer)
    return host, pushed


FRAME = (
    Codec([ProductAdded, GetProduct])
    .encode(
        Envelope(message_id="m1", name="catalog.ProductAdded"),
        ProductAdded(sku="TEA", name="Tea", price_cents=1, currency="EUR"),
    )
    .decode()
)


async def test_a_handled_delivery_returns_and_leaves_the_ok_to_its_actor() -> None:
    host, pushed = host_with(None)
    await host.deliver(("catalog", FRAME), "d1", "replies")
    assert pushed.outcomes == []  # said from the worker thread, off the event loop


@pytest.mark.parametrize(
    ("answer", "kind", "reason"),
    [
        (Unavailable("database away"), Retryable, "Unavailable: database away"),
        (RuntimeError("a bug"), Retryable, "Internal: RuntimeError: a bug"),
        (NotFound("no such order"), Final, "NotFound: no such order (final)"),
        (PoisonMessage("unknown message name 'x'"), Final, "unknown message name 'x'"),
    ],
)
async def test_a_failed_delivery_is_retried_only_when_it_may_succeed_later(
    answer: BaseException, kind: type[Exception], reason: str
) -> None:
    host, pushed = host_with(answer)
    with pytest.raises(kind) as raised:
        await host.deliver(("catalog", FRAME), "d1", "replies")
    assert raised.value.reason == reason  # type: ignore[attr-defined]
    assert pushed.outcomes == []  # dramatiq decides what happens next; the caller hears then


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("catalog",), "takes a module and a frame, not (str)"),
        (("catalog", 7), "takes a module and a frame, not (str, int)"),
        (("payments", FRAME), "module 'payments' does not run in this worker"),
    ],
)
async def test_a_delivery_of_the_wrong_shape_is_final(args: tuple[Any, ...], reason: str) -> None:
    host, _ = host_with(None)
    with pytest.raises(Final, match=reason.replace("(", r"\(").replace(")", r"\)")):
        await host.deliver(args, "d1", None)


async def test_a_request_of_the_wrong_shape_is_answered_as_poison_and_kept() -> None:
    host, pushed = host_with(None)
    with pytest.raises(Final, match="takes one frame"):
        await host.request((1, 2), "r1", "replies")
    ((key, outcome),) = pushed.outcomes
    assert (key, outcome.id, outcome.kind) == ("replies", "r1", "reply")
    with pytest.raises(PoisonMessage, match="takes one frame"):
        Codec([GetProduct]).decode_reply(bytes(outcome.reply), GetProduct)


async def test_without_a_running_runtime_a_message_waits_for_a_retry() -> None:
    host, _ = host_with(None)
    host.receiver = None
    with pytest.raises(Retryable, match="not running"):
        await host.deliver(("catalog", FRAME), "d1", None)


def test_outcomes_carry_a_reply_unchanged() -> None:
    reply = Codec([GetProduct]).encode_error(NotFound("gone", code="x", field="sku"))
    encoded = encode_outcome(Outcome(id="a", kind="reply", reply=msgspec.Raw(reply)))
    decoded = msgspec.json.decode(encoded, type=Outcome)
    assert bytes(decoded.reply) == reply
    assert msgspec.json.decode(encode_outcome(Outcome(id="b", kind="ok"))) == {
        "id": "b",
        "kind": "ok",
    }


def test_queue_names_are_module_names_with_a_namespace_rabbitmq_can_see() -> None:
    assert QueueConfig().queue("inventory") == "inventory"
    assert QueueConfig(namespace="t1").queue("inventory") == "inventory"  # Redis: in the keys
    rabbit = QueueConfig(broker="rabbitmq", namespace="t1")
    assert rabbit.queue("inventory") == "t1.inventory"
    assert rabbit.module_of("t1.inventory.XQ") == "inventory"
    assert QueueConfig(broker="rabbitmq").queue("inventory") == "inventory"
    assert QueueConfig(namespace="t1").reasons_key("inventory") == "t1:inventory.XQ.reasons"
    first, second = QueueConfig().reply_key("gateway"), QueueConfig().reply_key("gateway")
    assert first.startswith("dramatiq:replies:gateway:") and first != second


TOPOLOGY = """
[services.gateway]
public = true
port = 8000
modules = ["identity"]

[services.stock]
modules = ["catalog", "inventory"]
transport = "redis"

[services.rest]
modules = ["ordering", "payments", "notifications"]
port = 8100
"""


def test_a_worker_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    topology = parse_topology(TOPOLOGY, "t.toml", list(SHOP_PACKAGES), {})
    check_worker(topology, topology.service("stock"), processes=1)
    with pytest.raises(ConfigurationError, match="cleave serve rest"):
        check_worker(topology, topology.service("rest"), processes=1)
    with pytest.raises(ConfigurationError, match="cleave serve gateway"):
        check_worker(topology, topology.service("gateway"), processes=1)
    with pytest.raises(ConfigurationError, match="SQLite file of catalog, inventory"):
        check_worker(topology, topology.service("stock"), processes=2)
    postgres = "postgresql+asyncpg://db/shop"
    environ = {"CLEAVE_CATALOG_DATABASE_URL": postgres, "CLEAVE_INVENTORY_DATABASE_URL": postgres}
    check_worker(topology, topology.service("stock"), processes=2, environ=environ)
