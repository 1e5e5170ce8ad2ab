"""The queue transport on the real Redis: what a caller and an operator see.

A dramatiq worker hosting catalog and inventory (``RunningProcess``, exactly as ``cleave
worker`` builds it) runs in this process on its own thread and event loop; the test is the
calling process: a runtime hosting no module that reaches both over their queues. Every test
has a dramatiq namespace of its own and removes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis

from adapters.bus.redis.broker import make_broker
from adapters.bus.redis.client import QueueClient, QueueTransport
from adapters.bus.redis.config import DELIVER_ACTOR, QueueConfig
from adapters.bus.redis.worker import worker_broker
from entrypoints.bootstrap import Remote, bootstrap, shop_contracts
from entrypoints.process import ProcessPlan, RunningProcess
from entrypoints.settings import Settings
from entrypoints.worker import HostedProcess
from kernel import SYSTEM
from kernel.codec import Codec
from kernel.errors import Forbidden, NotFound, Unavailable
from kernel.module import declared_messages
from kernel.receiver import Receiver
from kernel.runtime import Runtime
from modules.catalog.contracts import PRODUCT_NOT_FOUND, AddProduct, GetProduct, Product
from modules.inventory.contracts import GetStock, ReserveStock, Restock, SellStock, StockLine
from tests.support.processes import ROOT
from tests.support.services import REDIS_URL, reachable, require

pytestmark = pytest.mark.anyio

RABBITMQ_URL = os.environ.get("CLEAVE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

SETTINGS = Settings(
    password_hash_cost="low",
    delivery_backoff_seconds=0.02,
    delivery_attempts=3,
    delivery_ack_timeout_seconds=5.0,
    remote_timeout_seconds=5.0,
    shutdown_grace_seconds=5.0,
)


def config(namespace: str, **changes: Any) -> QueueConfig:
    base = QueueConfig.from_settings(SETTINGS)
    values = {**base.__dict__, "redis_url": REDIS_URL, "namespace": namespace, **changes}
    return QueueConfig(**values)


@pytest.fixture
def namespace() -> Iterator[str]:
    """A namespace of the test's own (Redis keys, RabbitMQ queue names), removed after."""
    require("Redis", REDIS_URL, 6379, "CLEAVE_TEST_REDIS_URL")
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    if reachable(RABBITMQ_URL, 5672):
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
        channel = connection.channel()
        for module in ("catalog", "inventory"):
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(f"{name}.{module}{suffix}")
        connection.close()


# -- the worker side ---------------------------------------------------------------------------


@dataclass
class Faults:
    """Deliveries the worker's receiver fails (before the handler runs), by message name:
    how many times each message id of that name fails."""

    times: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    seen: dict[str, int] = field(default_factory=dict)
    #: Deliveries whose handler returned (its unit of work committed).
    finished: list[str] = field(default_factory=list)
    #: Requests whose frame holds ``slow_marker`` take ``slow_seconds`` before their handler.
    slow_marker: bytes = b""
    slow_seconds: float = 0.0
    #: How many of those this worker took.
    slow_taken: int = 0


class FaultyReceiver(Receiver):
    def __init__(self, inner: Receiver, faults: Faults) -> None:
        super().__init__(inner.dispatcher, inner.codec)
        self.faults = faults

    async def deliver(self, module: str, frame: bytes) -> bytes:
        try:
            envelope = json.loads(frame)["envelope"]
        except (ValueError, KeyError, TypeError):
            return await super().deliver(module, frame)  # poison: the receiver says why
        key = envelope["message_id"]
        allowed = self.faults.times.get(envelope["name"], 0)
        self.faults.seen[key] = self.faults.seen.get(key, 0) + 1
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)  # the handler's work, as it were
        if self.faults.seen[key] <= allowed:
            return self.codec.encode_error(Unavailable(f"injected failure {self.faults.seen[key]}"))
        reply = await super().deliver(module, frame)
        self.faults.finished.append(key)
        return reply

    async def request(self, frame: bytes) -> bytes:
        if self.faults.slow_marker and self.faults.slow_marker in frame:
            self.faults.slow_taken += 1
            await asyncio.sleep(self.faults.slow_seconds)  # a client waiting, as it were
        return await super().request(frame)


class FaultyHosted(HostedProcess):
    def __init__(self, process: RunningProcess, faults: Faults) -> None:
        super().__init__(process)
        self.faults = faults

    async def start(self) -> Receiver:
        return FaultyReceiver(await super().start(), self.faults)


@contextlib.contextmanager
def running_worker(
    queues: QueueConfig, database: Path, faults: Faults | None = None, threads: int = 4
) -> Iterator[dramatiq.Worker]:
    """A worker hosting catalog and inventory, as ``cleave worker`` runs it."""
    plan = ProcessPlan(
        name="stock",
        hosted=("catalog", "inventory"),
        public=False,
        database_urls={m: f"sqlite+aiosqlite:///{database}" for m in ("catalog", "inventory")},
    )
    hosted = FaultyHosted(RunningProcess(plan, SETTINGS), faults or Faults())
    broker, _ = worker_broker(queues, hosted, plan.hosted)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=200)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=10_000)
        broker.close()


# -- the calling side --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def caller(queues: QueueConfig) -> AsyncIterator[Runtime]:
    """A process hosting no module, reaching catalog and inventory over their queues."""
    contracts = shop_contracts()
    codec = Codec([cls for c in contracts.values() for cls in declared_messages(c)], "json")
    client = QueueClient(queues, "tests")
    remote = {
        name: Remote(contracts[name], QueueTransport(client, codec, name))
        for name in ("catalog", "inventory")
    }
    remote.update({name: Remote(contracts[name]) for name in contracts if name not in remote})
    runtime = bootstrap(database={}, settings=SETTINGS, modules=[], remote=remote)
    runtime.closers.append(client.close)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop(grace=5)


async def eventually(check: Any, within: float = 20.0) -> None:
    end = time.monotonic() + within
    while True:
        try:
            if await check():
                return
        except (NotFound, Unavailable):
            pass
        assert time.monotonic() < end, "the condition did not hold in time"
        await asyncio.sleep(0.05)


def outbox_dead_letters(runtime: Runtime) -> list[Any]:
    return [
        letter for relay in runtime.relays for letter in getattr(relay._store, "dead_letters", [])
    ]


# -- requests ----------------------------------------------------------------------------------


async def test_commands_and_queries_get_their_results_and_typed_errors(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    with running_worker(queues, tmp_path / "stock.db"):
        async with caller(queues) as runtime:
            bus = runtime.bus
            added = await bus.send(
                AddProduct(sku="TEA", name="Green tea", price_cents=450), principal=SYSTEM
            )
            assert added == Product(sku="TEA", name="Green tea", price_cents=450, currency="EUR")
            assert await bus.ask(GetProduct(sku="TEA")) == added
            # catalog's ProductAdded reached inventory inside the worker: stock exists.
            await eventually(lambda: _on_hand(bus, "TEA", 0))

            with pytest.raises(NotFound) as missing:
                await bus.ask(GetProduct(sku="NOPE"))
            assert (missing.value.code, missing.value.field) == (PRODUCT_NOT_FOUND, "sku")
            with pytest.raises(Forbidden):
                await bus.send(AddProduct(sku="X", name="X", price_cents=1))


async def test_without_a_worker_a_call_is_unavailable_at_its_deadline_and_never_runs_later(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    async with caller(queues) as runtime:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await runtime.bus.send(
                AddProduct(sku="LATE", name="Late", price_cents=1),
                principal=SYSTEM,
                deadline=time.time() + 0.5,
            )
        assert 0.4 < time.monotonic() - started < 2.0
        # A worker that starts later does not run the command its caller gave up on, and
        # does not keep it as a dead letter either.
        with running_worker(queues, tmp_path / "stock.db"):
            await asyncio.sleep(1.0)
            with pytest.raises(NotFound):
                await runtime.bus.ask(GetProduct(sku="LATE"))
        assert _broker_dead_letters(queues, "catalog") == []


# -- deliveries --------------------------------------------------------------------------------


async def test_a_delivery_that_fails_is_retried_by_the_worker_and_has_its_effect_once(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    faults = Faults(times={"inventory.ReserveStock": 2})
    with running_worker(queues, tmp_path / "stock.db", faults):
        async with caller(queues) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
            await eventually(lambda: _on_hand(bus, "TEA", 0))
            await bus.send(Restock(sku="TEA", quantity=5), principal=SYSTEM)
            lines = [StockLine(sku="TEA", quantity=2)]
            await bus.defer(ReserveStock(order_id="order-1", lines=lines))
            assert await runtime.settle(20), stuck(runtime, queues)
            assert await _stock_is(bus, "TEA", on_hand=5, reserved=2)
            # Two injected failures, then the one that counted: all in one delivery.
            assert list(faults.seen.values()) == [3]
            assert outbox_dead_letters(runtime) == []
            assert _broker_dead_letters(queues, "inventory") == []


@pytest.mark.parametrize("broker", ["redis", pytest.param("rabbitmq", marks=pytest.mark.soak)])
async def test_a_refused_delivery_is_a_broker_dead_letter_an_operator_replays(
    namespace: str, tmp_path: Path, broker: str
) -> None:
    if broker == "rabbitmq":
        require("RabbitMQ", RABBITMQ_URL, 5672, "CLEAVE_TEST_RABBITMQ_URL")
    queues = config(namespace, broker=broker, rabbitmq_url=RABBITMQ_URL)
    topology = _topology(tmp_path, tmp_path / "stock.db")
    with running_worker(queues, tmp_path / "stock.db"):
        async with caller(queues) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
            await eventually(lambda: _on_hand(bus, "TEA", 0))
            await bus.send(Restock(sku="TEA", quantity=5), principal=SYSTEM)
            # Selling stock no order reserved is refused for good: dead at once, no retry.
            await bus.defer(SellStock(order_id="order-7"))
            assert await runtime.settle(20), stuck(runtime, queues)
            assert outbox_dead_letters(runtime) == []  # it left the outbox...

            (letter,) = _listed(queues, topology)  # ...and is in the broker's dead letters
            assert letter["ref"].startswith(f"{broker}:inventory:")
            assert letter["name"] == "inventory.SellStock"
            assert letter["target"] == "inventory"
            assert letter["attempts"] == 1
            assert "NotFound" in letter["reason"] and "(final)" in letter["reason"]
            shown = _cleave(queues, topology, "dead-letters", "show", letter["ref"])
            assert shown.returncode == 0, shown.stderr
            record = json.loads(shown.stdout)
            assert record["message"] == {"type": "inventory.SellStock", "order_id": "order-7"}

            # The operator fixes the cause, then replays it from the broker.
            lines = [StockLine(sku="TEA", quantity=2)]
            await bus.send(ReserveStock(order_id="order-7", lines=lines), principal=SYSTEM)
            retried = _cleave(queues, topology, "dead-letters", "retry", letter["ref"])
            assert retried.returncode == 0, retried.stderr
            await eventually(lambda: _stock_is(bus, "TEA", on_hand=3, reserved=0))
            assert _listed(queues, topology) == []
            if broker == "redis":
                assert _broker_dead_letters(queues, "inventory") == []


async def test_poison_on_a_queue_is_dead_lettered_with_its_reason_and_the_worker_goes_on(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    topology = _topology(tmp_path, tmp_path / "stock.db")
    sender = make_broker(queues)
    envelope = {"message_id": "p1", "name": "inventory.Restock", "version": 1}
    body = {"type": "inventory.Restock", "sku": "TEA", "quantity": 1}

    def push(*args: Any, actor: str = DELIVER_ACTOR) -> None:
        sender.enqueue(dramatiq.Message("inventory", actor, args, {}, {}))

    with running_worker(queues, tmp_path / "stock.db"):
        async with caller(queues) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
            await eventually(lambda: _on_hand(bus, "TEA", 0))

            push("inventory", "{not a frame")
            push(
                "inventory",
                json.dumps({"envelope": {**envelope, "name": "inventory.Gone"}, "message": body}),
            )
            push("inventory", json.dumps({"envelope": {**envelope, "version": 7}, "message": body}))
            push("inventory")  # no frame at all
            push("x", actor="inventory.Vanished")  # an actor nobody declares
            raw = redis.Redis.from_url(REDIS_URL)
            raw.hset(f"{namespace}:inventory.msgs", "junk-1", b"\x00not json")
            raw.rpush(f"{namespace}:inventory", "junk-1")
            raw.close()
            # The next message is handled as if nothing happened.
            await bus.send(Restock(sku="TEA", quantity=4), principal=SYSTEM)
            assert (await bus.ask(GetStock(sku="TEA"))).on_hand == 4

            await eventually(lambda: _count(queues, topology, 6))
            reasons = sorted(letter["reason"] for letter in _listed(queues, topology))
            assert any("undecodable frame" in reason for reason in reasons), reasons
            assert any("unknown message name 'inventory.Gone'" in reason for reason in reasons)
            assert any("schema version 7" in reason for reason in reasons)
            assert any("takes a module and a frame" in reason for reason in reasons)
            assert any("no actor 'inventory.Vanished'" in reason for reason in reasons)
            assert any("not a dramatiq message" in reason for reason in reasons)
            purged = _cleave(queues, topology, "dead-letters", "purge", "--all")
            assert purged.returncode == 0 and "purged 6" in purged.stdout, purged.stdout
    sender.close()


async def test_deliveries_of_one_partition_are_handled_in_order_through_retries(
    namespace: str, tmp_path: Path
) -> None:
    # Each order's ReserveStock fails twice before it succeeds; its SellStock, deferred right
    # after it, would be refused (NotFound) if it overtook it.
    queues = config(namespace)
    faults = Faults(times={"inventory.ReserveStock": 2})
    orders = [f"order-{number}" for number in range(12)]
    with running_worker(queues, tmp_path / "stock.db", faults, threads=8):
        async with caller(queues) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
            await eventually(lambda: _on_hand(bus, "TEA", 0))
            await bus.send(Restock(sku="TEA", quantity=100), principal=SYSTEM)
            for order in orders:
                await bus.defer(
                    ReserveStock(order_id=order, lines=[StockLine(sku="TEA", quantity=1)])
                )
                await bus.defer(SellStock(order_id=order))
            assert await runtime.settle(60), stuck(runtime, queues)
            assert await _stock_is(bus, "TEA", on_hand=100 - len(orders), reserved=0)
            assert _broker_dead_letters(queues, "inventory") == []
            assert outbox_dead_letters(runtime) == []


async def test_a_stopping_worker_finishes_what_it_started_and_leaves_the_rest_queued(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace, ack_timeout=60.0)
    slow = Faults(delay=0.3)
    async with caller(queues) as runtime:
        bus = runtime.bus
        with running_worker(queues, tmp_path / "stock.db"):
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
            await eventually(lambda: _on_hand(bus, "TEA", 0))
            await bus.send(Restock(sku="TEA", quantity=100), principal=SYSTEM)
        # Twenty reservations of one unit, each taking 0.3 s in a worker of one thread.
        for number in range(20):
            lines = [StockLine(sku="TEA", quantity=1)]
            await bus.defer(ReserveStock(order_id=f"order-{number}", lines=lines))
        with running_worker(queues, tmp_path / "stock.db", slow, threads=1) as worker:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(worker.stop, 10_000)
        started, handled = len(slow.seen), len(slow.finished)
        assert 1 <= handled < 20
        assert started == handled, "a delivery in flight was cut off by the stop"
        queued = _queued(queues, "inventory")
        # Nothing lost: each one was either handled (and acked) or is back on the queue.
        assert handled + queued == 20, (handled, queued)
        with running_worker(queues, tmp_path / "stock.db"):
            assert await runtime.settle(30), stuck(runtime, queues)
            assert await _stock_is(bus, "TEA", on_hand=100, reserved=20)


async def test_requests_that_take_long_leave_the_worker_threads_to_the_others(
    namespace: str, tmp_path: Path
) -> None:
    # Clients waiting for their orders (GetOrder with a wait) are slow requests: more of them
    # than the worker has threads must not stop the quick ones, nor the deliveries.
    queues = config(namespace)
    slow = Faults(slow_marker=b"SLOW", slow_seconds=6.0)
    with running_worker(queues, tmp_path / "stock.db", slow, threads=2):
        async with caller(queues) as runtime:
            bus = runtime.bus
            await bus.send(AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM)
            await eventually(lambda: _on_hand(bus, "TEA", 0))
            deadline = time.time() + 30
            waits = [
                asyncio.ensure_future(bus.ask(GetProduct(sku=f"SLOW-{n}"), deadline=deadline))
                for n in range(6)
            ]
            await asyncio.sleep(0.8)  # every slow one has been taken by now
            assert await bus.ask(GetProduct(sku="TEA")) is not None
            await bus.send(Restock(sku="TEA", quantity=5), principal=SYSTEM)
            await bus.defer(ReserveStock(order_id="o-1", lines=[StockLine(sku="TEA", quantity=2)]))
            await eventually(lambda: _stock_is(bus, "TEA", on_hand=5, reserved=2), within=10)
            assert not any(wait.done() for wait in waits), "the slow requests ended first"
            for outcome in await asyncio.gather(*waits, return_exceptions=True):
                assert isinstance(outcome, NotFound), outcome


# -- helpers -----------------------------------------------------------------------------------


async def _on_hand(bus: Any, sku: str, expected: int) -> bool:
    return bool((await bus.ask(GetStock(sku=sku))).on_hand == expected)


async def _stock_is(bus: Any, sku: str, *, on_hand: int, reserved: int) -> bool:
    level = await bus.ask(GetStock(sku=sku))
    return bool((level.on_hand, level.reserved) == (on_hand, reserved))


def stuck(runtime: Runtime, queues: QueueConfig) -> str:
    """What a relay still waits for, and where its messages are on the broker."""
    waiting = [
        f"{record.envelope and record.envelope.name} {record.id} to {record.target}"
        for relay in runtime.relays
        for record in relay._in_flight_records.values()
    ]
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = sorted(key.decode() for key in client.scan_iter(f"{queues.namespace}:*"))
        sizes = {
            key: client.llen(key) if client.type(key) == b"list" else client.type(key)
            for key in keys
            if not key.endswith(".msgs")
        }
        acks = {key: client.scard(key) for key in keys if "__acks__" in key}
    finally:
        client.close()
    return f"in flight: {waiting}; keys: {sizes}; held unacked: {acks}"


def _queued(queues: QueueConfig, module: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.llen(f"{queues.namespace}:{queues.queue(module)}"))
    finally:
        client.close()


def _broker_dead_letters(queues: QueueConfig, module: str) -> list[bytes]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.zrange(f"{queues.namespace}:{queues.queue(module)}.XQ", 0, -1))
    finally:
        client.close()


def _topology(tmp_path: Path, stock_database: Path) -> Path:
    """A topology whose stock service is the worker of these tests."""
    path = tmp_path / "topology.toml"
    path.write_text(
        f"""
name = "redis-tests"

[services.gateway]
public = true
port = 8999
modules = ["identity", "ordering", "payments", "notifications"]

[services.stock]
modules = ["catalog", "inventory"]
transport = "redis"
database = "sqlite+aiosqlite:///{stock_database}"
"""
    )
    return path


def _cleave(
    queues: QueueConfig, topology: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "entrypoints.cli", *arguments, "--topology", str(topology)]
    return subprocess.run(
        command,
        cwd=ROOT,
        env={
            **os.environ,
            "CLEAVE_REDIS_URL": REDIS_URL,
            "CLEAVE_BROKER": queues.broker,
            "CLEAVE_RABBITMQ_URL": queues.rabbitmq_url,
            "CLEAVE_QUEUE_NAMESPACE": queues.namespace,
            "CLEAVE_DATA_DIR": str(topology.parent / "data"),
            "CLEAVE_LOG_LEVEL": "WARNING",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def _listed(queues: QueueConfig, topology: Path) -> list[dict[str, Any]]:
    result = _cleave(queues, topology, "dead-letters", "list", "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def _count(queues: QueueConfig, topology: Path, expected: int) -> bool:
    return len(await asyncio.to_thread(_listed, queues, topology)) >= expected
