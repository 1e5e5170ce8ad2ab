"""Requests over Redis are taken by the worker's event loop (``adapters/bus/redis/requests.py``).

They skip dramatiq's consumer and worker threads but keep its queue layout and guarantees:
acked only once answered, a stopping worker finishes what it took and leaves the rest
queued, and what the loop cannot read lands in the module's dead letters with its reason.
The worker and the caller are those of ``test_redis_transport``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis

from adapters.bus.redis.broker import WakingRedisBroker, make_broker
from adapters.bus.redis.config import REQUEST_ACTOR, QueueConfig
from entrypoints.up import ROOT
from kernel import SYSTEM
from kernel.errors import NotFound, Unavailable
from modules.catalog.contracts import AddProduct, GetProduct
from tests.integration.test_redis_transport import (
    Faults,
    _broker_dead_letters,
    _count,
    _listed,
    _topology,
    caller,
    config,
    eventually,
    namespace,
    running_worker,
)
from tests.support.services import REDIS_URL

pytestmark = pytest.mark.anyio

__all__ = ["namespace"]  # the fixture, used by name


def _keys(namespace: str, pattern: str) -> dict[str, int]:
    """Redis keys of the namespace matching ``pattern``, with their sizes."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        sizes = {}
        for key in client.scan_iter(f"{namespace}:{pattern}", count=1000):
            kind = bytes(client.type(key))  # type: ignore[arg-type]
            if kind == b"none":
                continue  # emptied since the scan (Redis drops an empty list)
            size = {b"list": client.llen, b"hash": client.hlen, b"set": client.scard}[kind](key)
            sizes[key.decode()] = int(size)
        return sizes
    finally:
        client.close()


async def test_a_request_goes_to_the_requests_queue_and_is_acked_once_answered(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    with running_worker(queues, tmp_path / "stock.db"):
        async with caller(queues) as runtime:
            added = await runtime.bus.send(
                AddProduct(sku="TEA", name="Tea", price_cents=300), principal=SYSTEM
            )
            assert await runtime.bus.ask(GetProduct(sku="TEA")) == added
            # Taken from catalog.requests (dramatiq's layout), acked: nothing held, nothing
            # left; dramatiq's consumer of the catalog queue never saw them.
            held = _keys(namespace, "__acks__.*.catalog.requests")
            assert sum(held.values()) == 0, held
            assert _keys(namespace, "catalog.requests.msgs") == {}
            assert _keys(namespace, "catalog.msgs") == {}


async def test_a_stopping_worker_answers_the_request_it_took_and_leaves_the_next_queued(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    slow = Faults(slow_marker=b"SLOW", slow_seconds=1.5)
    async with caller(queues) as runtime:
        bus = runtime.bus
        worker = running_worker(queues, tmp_path / "stock.db", slow)
        worker.__enter__()
        taken = asyncio.ensure_future(bus.ask(GetProduct(sku="SLOW-1")))
        await asyncio.sleep(0.5)  # taken by now, its handler still running
        # The worker stops (as on SIGTERM) while the caller's loop goes on.
        stopping = asyncio.ensure_future(asyncio.to_thread(worker.__exit__, None, None, None))
        await asyncio.sleep(0.8)  # the worker no longer takes requests
        late = asyncio.ensure_future(bus.ask(GetProduct(sku="TEA"), deadline=time.time() + 2))
        # The request in flight is finished and answered, not cut off.
        with pytest.raises(NotFound):
            await taken
        await stopping
        # The one sent meanwhile was left on the queue for another worker.
        await asyncio.sleep(0.3)
        assert _keys(namespace, "catalog.requests") == {f"{namespace}:catalog.requests": 1}
        late.cancel()


#: A worker process of its own (so that it can be killed), hosting catalog and inventory as
#: ``running_worker`` does, whose requests for a ``SLOW`` SKU take a minute.
_KILLABLE_WORKER = """
import sys, time
from pathlib import Path
from tests.integration.test_redis_transport import Faults, config, running_worker
slow = Faults(slow_marker=b"SLOW", slow_seconds=60)
with running_worker(config(sys.argv[1]), Path(sys.argv[2]), slow):
    time.sleep(120)
"""


async def test_a_request_whose_worker_is_killed_fails_at_its_deadline_and_never_runs_again(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    database = tmp_path / "stock.db"
    killed = _start_killable_worker(namespace, database)
    try:
        async with caller(queues) as runtime:
            bus = runtime.bus
            await eventually(lambda: _answers(bus))
            asked = asyncio.ensure_future(
                bus.ask(GetProduct(sku="SLOW-1"), deadline=time.time() + 2)
            )
            # Taken, and the only one held (the probes before it were acked).
            await _wait_for(lambda: _holds_only(namespace, b"SLOW-1"))
            killed.kill()  # SIGKILL, its request in the middle of its handler
            killed.wait(timeout=10)
            with pytest.raises(Unavailable) as failure:
                await asked
            assert failure.value.code == "deadline"
            # The dead worker still holds it. dramatiq's maintenance gives what a worker held
            # back to its queue once the worker's heartbeat is older than the heartbeat
            # timeout (30 s here): done now, with a timeout of 1 ms.
            _requeue_from_dead_workers(queues)
            assert _keys(namespace, "catalog.requests") == {f"{namespace}:catalog.requests": 1}
            again = Faults(slow_marker=b"SLOW", slow_seconds=60)
            with running_worker(queues, database, again):
                # Its caller gave up: the next worker drops it instead of running it again.
                await _wait_for(lambda: _held_and_queued(namespace, 0))
                with pytest.raises(NotFound):
                    await bus.ask(GetProduct(sku="TEA"))
            assert again.slow_taken == 0
    finally:
        killed.kill()
        killed.wait(timeout=10)


def _start_killable_worker(namespace: str, database: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _KILLABLE_WORKER, namespace, str(database)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _answers(bus: Any) -> bool:
    with contextlib.suppress(NotFound):
        await bus.ask(GetProduct(sku="TEA"), deadline=time.time() + 1)
    return True


async def _holds_only(namespace: str, marker: bytes) -> bool:
    """Whether the one request held by a worker, with nothing queued, is ``marker``'s."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        if client.llen(f"{namespace}:catalog.requests"):
            return False
        held = [
            data
            for key in client.scan_iter(f"{namespace}:__acks__.*.catalog.requests")
            for redis_id in client.smembers(key)
            if (data := client.hget(f"{namespace}:catalog.requests.msgs", redis_id))
        ]
        return len(held) == 1 and marker in held[0]
    finally:
        client.close()


async def _held_and_queued(namespace: str, count: int) -> bool:
    queued = sum(_keys(namespace, "catalog.requests").values())
    return queued + sum(_keys(namespace, "__acks__.*.catalog.requests").values()) == count


def _requeue_from_dead_workers(queues: QueueConfig) -> None:
    """dramatiq's maintenance of catalog's requests queue, as any fetch of it may run it,
    with a heartbeat timeout of 1 ms: what dead workers held goes back to the queue."""
    broker = make_broker(queues)
    assert isinstance(broker, WakingRedisBroker)
    broker.heartbeat_timeout = 1
    broker.maintenance_chance = 1_000_000  # every command
    time.sleep(0.01)
    try:
        # "requeue" of no message: nothing but the maintenance.
        arguments = broker.dispatch_arguments("requeue", queues.request_queue("catalog"))
        broker.scripts["dispatch"](keys=[broker.namespace], args=arguments)
    finally:
        broker.close()


async def test_what_the_loop_cannot_read_lands_in_the_module_dead_letters_with_its_reason(
    namespace: str, tmp_path: Path
) -> None:
    queues = config(namespace)
    topology = _topology(tmp_path, tmp_path / "stock.db")
    sender = make_broker(queues)
    requests = queues.request_queue("catalog")
    envelope = {"message_id": "p1", "name": "catalog.GetProduct", "version": 1}
    body = {"type": "catalog.GetProduct", "sku": "TEA"}
    with running_worker(queues, tmp_path / "stock.db"):
        async with caller(queues) as runtime:
            sender.enqueue(dramatiq.Message(requests, REQUEST_ACTOR, ("{not a frame",), {}, {}))
            frame = json.dumps({"envelope": {**envelope, "version": 9}, "message": body})
            sender.enqueue(dramatiq.Message(requests, REQUEST_ACTOR, (frame,), {}, {}))
            sender.enqueue(dramatiq.Message(requests, "catalog.Vanished", ("x",), {}, {}))
            raw = redis.Redis.from_url(REDIS_URL)
            raw.hset(f"{namespace}:{requests}.msgs", "junk-1", b"\x00not json")
            raw.rpush(f"{namespace}:{requests}", "junk-1")
            raw.close()
            # The next request is answered as if nothing happened.
            with pytest.raises(NotFound):
                await runtime.bus.ask(GetProduct(sku="TEA"))

            await _wait_for(lambda: _count(queues, topology, 4))
            reasons = sorted(letter["reason"] for letter in _listed(queues, topology))
            assert len(reasons) == 4, reasons
            assert any("undecodable frame" in reason for reason in reasons), reasons
            assert any("schema version 9" in reason for reason in reasons), reasons
            assert any("no actor 'catalog.Vanished'" in reason for reason in reasons), reasons
            assert any("not a dramatiq message" in reason for reason in reasons), reasons
            assert len(_broker_dead_letters(queues, "catalog")) == 4
            held = _keys(namespace, "__acks__.*.catalog.requests")
            assert sum(held.values()) == 0, held
    sender.close()


async def _wait_for(check: object, within: float = 20.0) -> None:
    end = time.monotonic() + within
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < end, "the condition did not hold in time"
        await asyncio.sleep(0.1)
