"""The queue transport on the real Redis, next to plain dramatiq and raw Redis in the same run.

``python -m bench.redis_transport [--quick]``. Every worker is a process of its own (dramatiq
``Worker``, 8 threads) on the Redis at ``CLEAVE_BENCH_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``), in a namespace of its own that is removed afterwards.

* **event throughput**: N messages sent as fast as the sender goes, timed until the last is
  handled. *plain dramatiq*: a sync actor on dramatiq's ``RedisBroker`` that counts (INCR)
  each message, the sender calling ``actor.send``. *cleave*: N deferred commands of the trivial
  module (``bench/trivial``) delivered by the relay of a calling process through
  ``QueueTransport`` to a worker hosting the module (one unit of work and the inbox per
  message), until the relay has heard ``ok`` for every one of them; so each message also
  makes the round trip back to the outbox.
* **end-to-end latency**: from send to the start of the handler (the send time travels in the
  message; the worker pushes the difference to a list): one message every 2 ms after a
  warm-up stream (steady state), and single messages after 1.5 s of quiet (dramatiq's
  consumer has backed off to its 1 s worker timeout by then; ours blocks instead).
* **query round trip**: ``bus.ask(Peek())`` one after the other from the calling process,
  answered by the worker, against a raw ``LPUSH`` + ``BRPOP`` round trip between two
  processes (redis-py, an echo process doing ``BRPOP`` + ``LPUSH``); and the same query
  through dramatiq's consumer and worker threads (the ``cleave.request`` actor on the
  module's queue, the path RabbitMQ takes) instead of the worker's event loop.
* **sending from async code**: the same round trip and throughput with the caller's
  ``broker.enqueue`` on the event loop and in ``asyncio.to_thread`` (the transport enqueues
  requests on the loop and deliveries from threads: the better of each).
* **memory**: RSS of each worker process once the measurements are done.

Nothing here passes or fails on time. The table comes first, then one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from bench.report import Section, fmt

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("CLEAVE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
THREADS = 8
LATENCY_GAP = 0.002
#: Messages sent before the timed ones: 1.5 s of stream, longer than dramatiq's 1 s back-off,
#: so that the steady-state figures are steady for plain dramatiq too.
WARM_UP = int(1.5 / LATENCY_GAP)


# -- the worker processes ----------------------------------------------------------------------


def _plain_worker(namespace: str) -> None:
    """Plain dramatiq: a sync actor that counts, or records its latency."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=REDIS_URL, namespace=namespace)
    client = redis.Redis.from_url(REDIS_URL)

    def hit(sent: float, timed: bool) -> None:
        if timed:
            client.rpush(f"{namespace}:bench:latency", time.time() - sent)
        else:
            client.incr(f"{namespace}:bench:count")

    dramatiq.Actor(hit, broker=broker, actor_name="hit", queue_name="bench", priority=0, options={})
    _serve(broker)


def _cleave_worker(namespace: str) -> None:
    """Our worker, hosting the trivial module; the receiver notes latencies of timed pings."""
    from adapters.bus.redis.config import QueueConfig
    from adapters.bus.redis.worker import worker_broker
    from bench.trivial.module import module as trivial
    from entrypoints.bootstrap import bootstrap
    from entrypoints.settings import Settings
    from kernel.receiver import Receiver

    client = redis.Redis.from_url(REDIS_URL)
    key = f"{namespace}:bench:latency"

    class Timed(Receiver):
        async def deliver(self, module: str, frame: bytes) -> bytes:
            # Ping(n=...) carries its send time in µs when timed, 0 otherwise.
            marker = frame.find(b'"n":')
            if marker > 0:
                sent = int(frame[marker + 4 : frame.index(b"}", marker)])
                if sent:
                    client.rpush(key, time.time() - sent / 1e6)
            return await super().deliver(module, frame)

    class Hosted:
        runtime: Any = None

        async def start(self) -> Receiver:
            self.runtime = bootstrap(database={}, settings=Settings(), modules=[trivial])
            await self.runtime.start()
            inner = self.runtime.receiver
            return Timed(inner.dispatcher, inner.codec)

        async def stop(self) -> None:
            await self.runtime.stop()

        async def checks(self) -> dict[str, bool]:
            return {"runtime": True}

    config = QueueConfig(redis_url=REDIS_URL, namespace=namespace)
    broker, _ = worker_broker(config, Hosted(), ["bench"])
    _serve(broker)


def _serve(broker: Any) -> None:
    import dramatiq

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=THREADS)
    worker.start()
    print("ready", flush=True)
    stop.wait()
    worker.stop()
    broker.close()


def _echo(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=None)  # BRPOP waits for long
    while True:
        _, value = client.brpop([f"{namespace}:echo:req"])
        if value == b"stop":
            return
        client.lpush(f"{namespace}:echo:rep", value)


@contextlib.contextmanager
def _process(role: str, namespace: str) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.redis_transport", "--role", role, "--namespace", namespace],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        if role != "echo":
            assert child.stdout is not None
            line = child.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"the {role} worker did not start")
        else:
            time.sleep(0.3)
        yield child
    finally:
        if role == "echo":
            redis.Redis.from_url(REDIS_URL).lpush(f"{namespace}:echo:req", b"stop")
        else:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def _rss_mib(child: subprocess.Popen[bytes]) -> float:
    import psutil

    return float(psutil.Process(child.pid).memory_info().rss) / 2**20


# -- measuring ---------------------------------------------------------------------------------


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _latencies(client: redis.Redis, namespace: str, count: int, within: float = 30) -> list[float]:
    key = f"{namespace}:bench:latency"
    end = time.monotonic() + within
    while client.llen(key) < count and time.monotonic() < end:
        time.sleep(0.01)
    values = [float(value) for value in client.lrange(key, 0, -1)]
    client.delete(key)
    return values


def _latency_phases(
    client: redis.Redis, namespace: str, timed: int, send: Any
) -> tuple[float, float, float]:
    """Steady state: a warm-up stream of 1.5 s, then ``timed`` messages one every
    ``LATENCY_GAP`` (p50, p99). After idle: one message after 1.5 s of quiet, five times
    (median)."""
    for _ in range(WARM_UP):
        send(False)
        time.sleep(LATENCY_GAP)
    for _ in range(timed):
        send(True)
        time.sleep(LATENCY_GAP)
    p50, p99 = _percentiles(_latencies(client, namespace, timed))
    idle = []
    for _ in range(5):
        time.sleep(1.5)
        send(True)
        idle.extend(_latencies(client, namespace, 1))
    return p50, p99, _percentiles(idle)[0]


class _Plain:
    """The calling side of plain dramatiq: sync sends to the ``hit`` actor."""

    def __init__(self, namespace: str) -> None:
        import dramatiq
        from dramatiq.brokers.redis import RedisBroker

        self.namespace = namespace
        self.broker = RedisBroker(url=REDIS_URL, namespace=namespace, middleware=[])
        self.client = redis.Redis.from_url(REDIS_URL)
        self.message = dramatiq.Message("bench", "hit", (0.0, False), {}, {})

    def send(self, timed: bool) -> None:
        message = self.message.copy(args=(time.time(), timed), message_id=str(uuid.uuid4()))
        self.broker.enqueue(message)

    def throughput(self, count: int) -> float:
        key = f"{self.namespace}:bench:count"
        self.client.delete(key)
        started = time.perf_counter()
        for _ in range(count):
            self.send(False)
        while int(self.client.get(key) or 0) < count:
            time.sleep(0.002)
        return count / (time.perf_counter() - started)


async def _cleave_throughput(namespace: str, count: int, offload: bool) -> float:
    from bench.trivial.contracts import Ping

    async with _caller(namespace, offload) as runtime:
        for _ in range(100):  # warm up: connections, scripts, the thread pool
            await runtime.bus.defer(Ping())
        await runtime.settle(within=60, interval=0.002)
        started = time.perf_counter()
        for _ in range(count):
            await runtime.bus.defer(Ping())
        settled = await runtime.settle(within=120, interval=0.002)
        return count / (time.perf_counter() - started) if settled else 0.0


async def _cleave_asks(
    namespace: str, asks: int, offload: bool, on_loop: bool = True
) -> list[float]:
    from bench.trivial.contracts import Peek

    async with _caller(namespace, offload, on_loop) as runtime:
        for _ in range(50):  # warm up
            await runtime.bus.ask(Peek())
        samples = []
        for _ in range(asks):
            started = time.perf_counter()
            await runtime.bus.ask(Peek())
            samples.append(time.perf_counter() - started)
        return samples


async def _cleave_latency(namespace: str, timed: int) -> tuple[float, float, float]:
    """``_latency_phases``, sent from the calling process's event loop."""
    from bench.trivial.contracts import Ping

    client = redis.Redis.from_url(REDIS_URL)
    async with _caller(namespace, False) as runtime:
        bus = runtime.bus
        for _ in range(WARM_UP):
            await bus.defer(Ping())
            await asyncio.sleep(LATENCY_GAP)
        for _ in range(timed):
            await bus.defer(Ping(n=int(time.time() * 1e6)))
            await asyncio.sleep(LATENCY_GAP)
        steady = await asyncio.to_thread(_latencies, client, namespace, timed)
        idle = []
        for _ in range(5):
            await asyncio.sleep(1.5)
            await bus.defer(Ping(n=int(time.time() * 1e6)))
            idle.extend(await asyncio.to_thread(_latencies, client, namespace, 1))
        await runtime.settle(within=60)
    p50, p99 = _percentiles(steady)
    return p50, p99, _percentiles(idle)[0]


@contextlib.asynccontextmanager
async def _caller(namespace: str, offload: bool, on_loop: bool = True) -> AsyncIterator[Any]:
    from adapters.bus.redis.client import QueueClient, QueueTransport
    from adapters.bus.redis.config import QueueConfig
    from bench.trivial import contracts
    from entrypoints.bootstrap import Remote, bootstrap
    from entrypoints.settings import Settings
    from kernel.codec import Codec
    from kernel.module import declared_messages

    client = QueueClient(QueueConfig(redis_url=REDIS_URL, namespace=namespace), "bench")
    client.requests_offloaded = client.deliveries_offloaded = offload
    client.requests_on_loop = on_loop
    codec = Codec(declared_messages(contracts), "json")
    remote = {"bench": Remote(contracts, QueueTransport(client, codec, "bench"))}
    runtime = bootstrap(database={}, settings=Settings(), modules=[], remote=remote)
    runtime.closers.append(client.close)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def _raw_round_trips(namespace: str, asks: int) -> list[float]:
    client = redis.Redis.from_url(REDIS_URL)
    samples = []
    for number in range(asks + 50):
        started = time.perf_counter()
        client.lpush(f"{namespace}:echo:req", b"x")
        client.brpop([f"{namespace}:echo:rep"])
        if number >= 50:
            samples.append(time.perf_counter() - started)
    return samples


def _median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def _clean(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)


def measure(*, quick: bool) -> Section:
    """Every measurement of this file, as a section of the benchmark report.

    Every contender runs in the same minute as its baseline: the workers are all up at once,
    and the measurements take turns, round after round (the median counts), so that a busy
    neighbour slows them alike.
    """
    count, timed, asks, rounds = (500, 100, 150, 2) if quick else (3000, 1000, 1000, 5)
    names = {role: f"bench{uuid.uuid4().hex[:8]}" for role in ("plain", "cleave", "echo")}
    out: dict[str, float] = {}
    try:
        with (
            _process("plain", names["plain"]) as plain_worker,
            _process("cleave", names["cleave"]) as cleave_worker,
            _process("echo", names["echo"]),
        ):
            plain = _Plain(names["plain"])
            time.sleep(0.5)
            turns: dict[str, list[float]] = {}
            for _ in range(rounds):
                for name, run in (
                    ("plain_msgs_per_s", lambda: plain.throughput(count)),
                    (
                        "cleave_msgs_per_s",  # as shipped: deliveries enqueued from threads
                        lambda: asyncio.run(_cleave_throughput(names["cleave"], count, True)),
                    ),
                    (
                        "cleave_msgs_per_s_on_loop",
                        lambda: asyncio.run(_cleave_throughput(names["cleave"], count, False)),
                    ),
                ):
                    turns.setdefault(name, []).append(run())
            out.update({name: _median(values) for name, values in turns.items()})

            asked: dict[str, list[float]] = {"loop": [], "thread": [], "actor": [], "raw": []}
            for _ in range(rounds):
                # As shipped: a request is enqueued on the loop, taken by the worker's loop.
                asked["loop"] += asyncio.run(_cleave_asks(names["cleave"], asks, False))
                asked["thread"] += asyncio.run(_cleave_asks(names["cleave"], asks, True))
                # Through dramatiq's consumer and worker threads (the cleave.request actor).
                asked["actor"] += asyncio.run(_cleave_asks(names["cleave"], asks, False, False))
                asked["raw"] += _raw_round_trips(names["echo"], asks)
            out["cleave_ask_p50_ms"], out["cleave_ask_p99_ms"] = (
                1000 * value for value in _percentiles(asked["loop"])
            )
            out["cleave_ask_p50_ms_to_thread"] = 1000 * _percentiles(asked["thread"])[0]
            out["cleave_ask_p50_ms_actor"], out["cleave_ask_p99_ms_actor"] = (
                1000 * value for value in _percentiles(asked["actor"])
            )
            out["raw_rt_p50_ms"], out["raw_rt_p99_ms"] = (
                1000 * value for value in _percentiles(asked["raw"])
            )

            p50, p99, idle = _latency_phases(plain.client, names["plain"], timed, plain.send)
            out["plain_p50_ms"], out["plain_p99_ms"] = p50 * 1000, p99 * 1000
            out["plain_after_idle_ms"] = idle * 1000
            p50, p99, idle = asyncio.run(_cleave_latency(names["cleave"], timed))
            out["cleave_p50_ms"], out["cleave_p99_ms"] = p50 * 1000, p99 * 1000
            out["cleave_after_idle_ms"] = idle * 1000
            out["plain_worker_rss_mib"] = _rss_mib(plain_worker)
            out["cleave_worker_rss_mib"] = _rss_mib(cleave_worker)
            plain.broker.close()
    finally:
        for namespace in names.values():
            _clean(namespace)
    return _section(out, count, timed, asks, rounds)


def _section(out: dict[str, float], count: int, timed: int, asks: int, rounds: int) -> Section:
    def ms(name: str) -> str:
        return f"{out[name]:.2f}"

    rows = [
        ["event throughput, msgs/s", fmt(out["plain_msgs_per_s"]), fmt(out["cleave_msgs_per_s"]),
         "-", f"{out['cleave_msgs_per_s'] / out['plain_msgs_per_s']:.2f}x"],
        ["send -> handler p50, ms", ms("plain_p50_ms"), ms("cleave_p50_ms"), "-",
         f"{out['cleave_p50_ms'] / out['plain_p50_ms']:.2f}x"],
        ["send -> handler p99, ms", ms("plain_p99_ms"), ms("cleave_p99_ms"), "-",
         f"{out['cleave_p99_ms'] / out['plain_p99_ms']:.2f}x"],
        ["send -> handler after 1.5 s idle, ms", ms("plain_after_idle_ms"),
         ms("cleave_after_idle_ms"), "-",
         f"{out['cleave_after_idle_ms'] / out['plain_after_idle_ms']:.2f}x"],
        ["query round trip p50, ms", "-", ms("cleave_ask_p50_ms"), ms("raw_rt_p50_ms"),
         f"{out['cleave_ask_p50_ms'] / out['raw_rt_p50_ms']:.2f}x raw"],
        ["query round trip p99, ms", "-", ms("cleave_ask_p99_ms"), ms("raw_rt_p99_ms"),
         f"{out['cleave_ask_p99_ms'] / out['raw_rt_p99_ms']:.2f}x raw"],
        ["  the same through dramatiq's threads, p50", "-", ms("cleave_ask_p50_ms_actor"),
         ms("raw_rt_p50_ms"), f"{out['cleave_ask_p50_ms_actor'] / out['raw_rt_p50_ms']:.2f}x raw"],
        ["  the same through dramatiq's threads, p99", "-", ms("cleave_ask_p99_ms_actor"),
         ms("raw_rt_p99_ms"), f"{out['cleave_ask_p99_ms_actor'] / out['raw_rt_p99_ms']:.2f}x raw"],
        ["worker RSS, MiB", fmt(out["plain_worker_rss_mib"], 1),
         fmt(out["cleave_worker_rss_mib"], 1), "-",
         f"{out['cleave_worker_rss_mib'] / out['plain_worker_rss_mib']:.2f}x"],
    ]  # fmt: skip
    offload = [
        ["on the event loop", ms("cleave_ask_p50_ms"), fmt(out["cleave_msgs_per_s_on_loop"])],
        ["in asyncio.to_thread", ms("cleave_ask_p50_ms_to_thread"),
         fmt(out["cleave_msgs_per_s"])],
    ]  # fmt: skip
    # The names bench/run.py's summary already knows for item 4.
    out["msgs_per_s"] = out["cleave_msgs_per_s"]
    out["send_us"] = out["cleave_ask_p50_ms"] * 1000
    section = Section(
        title="4. Redis transport (dramatiq)",
        headers=["", "plain dramatiq", "cleave", "raw LPUSH+BRPOP", "cleave / baseline"],
        rows=rows,
        metrics={f"redis_{name}": round(value, 4) for name, value in out.items()},
    )
    section.notes = [
        f"{rounds} rounds taking turns; {count} messages a round for throughput, "
        f"{asks} queries a round; latency: {timed} timed one every "
        f"{LATENCY_GAP * 1000:.0f} ms after a warm-up stream, and 5 sent after 1.5 s of quiet; "
        f"workers: 1 process, {THREADS} threads each; medians of the rounds.",
        "throughput ratio cleave/plain "
        f"{out['cleave_msgs_per_s'] / out['plain_msgs_per_s']:.2f} (target >= 0.8); query "
        f"round trip p50 {out['cleave_ask_p50_ms']:.2f} ms (target < 1 ms).",
        "where the caller runs broker.enqueue (query p50, events/s): "
        + "; ".join(f"{row[0]}: {row[1]} ms, {row[2]}/s" for row in offload)
        + " (the transport enqueues requests on the loop, deliveries from threads).",
    ]
    return section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_transport")
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 1 minute)")
    parser.add_argument("--role", choices=["plain", "cleave", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.role:
        {"plain": _plain_worker, "cleave": _cleave_worker, "echo": _echo}[arguments.role](
            arguments.namespace
        )
        return 0
    started = time.monotonic()
    section = measure(quick=arguments.quick)
    print(section.text())
    summary: dict[str, Any] = dict(section.metrics)
    summary.update(
        quick=arguments.quick,
        seconds=round(time.monotonic() - started, 1),
        machine=f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
