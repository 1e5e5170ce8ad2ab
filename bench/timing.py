"""How every micro-benchmark here is timed: tight loops, interleaved repetitions, medians.

Each contender runs many calls in a tight loop, timed with ``perf_counter`` (wall time, the
reported figure) and ``process_time`` (the CPU time this process used, which shows whether
the machine was busy: on an idle core both agree). The contenders take turns, repetition
after repetition, so that a noisy neighbour or a change of CPU frequency slows them all
alike. The median of the repetitions is reported.
"""

from __future__ import annotations

import asyncio
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Both clocks, read together: (perf_counter, process_time).
Stamp = tuple[float, float]
#: A contender: runs ``n`` calls and returns (wall seconds, CPU seconds) they took.
AsyncLoop = Callable[[int], Awaitable[Stamp]]
SyncLoop = Callable[[int], Stamp]


def stamp() -> Stamp:
    """Read the wall clock and this process's CPU clock."""
    return time.perf_counter(), time.process_time()


def since(start: Stamp) -> Stamp:
    """Wall and CPU seconds since ``start``."""
    wall, cpu = time.perf_counter(), time.process_time()
    return wall - start[0], cpu - start[1]


def pin_to_one_core() -> int | None:
    """Pin this process to one CPU (the last one it may use) and return it.

    One core is what "messages per second on one core" means; it also keeps the scheduler
    from moving the loop between caches mid-run. Returns None where affinity is unsupported.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def unpin() -> None:
    """Let this process run on every CPU again (the load generator needs more than one)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


@dataclass(frozen=True)
class Timing:
    """Per-call times of one contender over its repetitions (seconds)."""

    median_s: float
    min_s: float
    max_s: float
    #: Median CPU seconds per call; well under ``median_s`` means the core was shared.
    cpu_s: float
    #: Calls per repetition.
    iterations: int

    @property
    def us(self) -> float:
        """Median microseconds per call (wall time)."""
        return self.median_s * 1e6

    @property
    def per_second(self) -> float:
        """Calls per second at the median."""
        return 1.0 / self.median_s


def _summarise(samples: list[Stamp], iterations: int) -> Timing:
    walls = [wall / iterations for wall, _ in samples]
    cpus = [cpu / iterations for _, cpu in samples]
    return Timing(
        statistics.median(walls), min(walls), max(walls), statistics.median(cpus), iterations
    )


def _iterations(seconds_per_call: float, budget: float) -> int:
    """How many calls fill ``budget`` seconds (at least 200, so timer resolution is moot)."""
    return max(200, min(2_000_000, int(budget / max(seconds_per_call, 1e-9))))


async def compare_async(
    contenders: Mapping[str, AsyncLoop], *, budget: float, repetitions: int
) -> dict[str, Timing]:
    """Time each contender ``repetitions`` times, taking turns; per-call medians.

    Each repetition of each contender lasts about ``budget`` seconds: a warm-up run (which
    also fills caches and lazy state) estimates how many calls that takes.
    """
    counts: dict[str, int] = {}
    for name, loop in contenders.items():
        await loop(200)
        counts[name] = _iterations((await loop(2000))[1] / 2000, budget)
    samples: dict[str, list[Stamp]] = {name: [] for name in contenders}
    for _ in range(repetitions):
        for name, loop in contenders.items():
            gc.collect()
            samples[name].append(await loop(counts[name]))
            await asyncio.sleep(0)
    return {name: _summarise(values, counts[name]) for name, values in samples.items()}


def compare_sync(
    contenders: Mapping[str, SyncLoop], *, budget: float, repetitions: int
) -> dict[str, Timing]:
    """The synchronous twin of ``compare_async``."""
    counts: dict[str, int] = {}
    for name, loop in contenders.items():
        loop(200)
        counts[name] = _iterations(loop(2000)[1] / 2000, budget)
    samples: dict[str, list[Stamp]] = {name: [] for name in contenders}
    for _ in range(repetitions):
        for name, loop in contenders.items():
            gc.collect()
            samples[name].append(loop(counts[name]))
    return {name: _summarise(values, counts[name]) for name, values in samples.items()}


def busy_note(timings: Mapping[str, Timing]) -> str:
    """A sentence on how quiet the machine was: the CPU share and the spread of repetitions."""
    wall = sum(t.median_s for t in timings.values())
    cpu = sum(t.cpu_s for t in timings.values())
    share = cpu / wall if wall else 1.0
    spread = statistics.median(t.median_s / t.min_s for t in timings.values())
    if share < 0.9:
        verdict = "the core was shared with other processes: wall times read high"
    elif spread > 1.2:
        verdict = (
            "the core was ours, but repetitions differ a lot (the CPU itself ran slower at "
            "times, e.g. a busy neighbour): the fastest repetitions are the better estimate"
        )
    else:
        verdict = "a quiet machine"
    return (
        f"CPU time / wall time during these loops: {share:.0%}; median / fastest "
        f"repetition: {spread:.2f}x ({verdict})."
    )


def load_average() -> str:
    """The 1-minute load average and the core count, for the record."""
    try:
        one, _, _ = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} on {os.cpu_count()} cores"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Cell:
    """What one contender measured in one setting (a route, a concurrency), summed over its
    rounds: the latency of each call, and the wall and CPU time of client and server."""

    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    server_cpu_s: float = 0.0
    errors: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def per_second(self) -> float:
        return self.count / self.wall_s if self.wall_s else 0.0

    def ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000

    @property
    def cpu_us(self) -> float:
        """Client CPU microseconds per call."""
        return self.cpu_s / self.count * 1e6 if self.count else float("nan")

    @property
    def server_cpu_us(self) -> float:
        return self.server_cpu_s / self.count * 1e6 if self.count else float("nan")


async def closed_loop(
    call: Callable[[], Awaitable[bool]],
    count: int,
    concurrency: int,
    latencies: list[float],
    failures: tuple[type[BaseException], ...] = (Exception,),
    on_failure: Callable[[BaseException], None] | None = None,
) -> int:
    """Run ``count`` calls from ``concurrency`` tasks, each starting its next call when its
    last one ended; returns how many failed (raised one of ``failures`` or answered False).
    Latencies of the calls that answered are appended to ``latencies``."""
    remaining = count
    errors = 0

    async def worker() -> None:
        nonlocal remaining, errors
        clock = time.perf_counter
        while remaining > 0:
            remaining -= 1
            started = clock()
            try:
                ok = await call()
            except failures as error:
                errors += 1
                if on_failure is not None:
                    on_failure(error)
                continue
            latencies.append(clock() - started)
            errors += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors
