"""Gauges read when Prometheus scrapes: what waits in the databases and how the circuits stand.

Each is one cheap aggregate query per module database of this process (the outbox and the
dead letters are small tables, emptied as they are delivered or replayed), so a scrape costs
a few milliseconds and the hot path nothing.
"""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select, text

from adapters.breakers import circuit_states
from adapters.sqlalchemy.storage import SqlStorage
from kernel.runtime import Runtime

log = logging.getLogger("cleave.metrics")

#: The sagas of the ordering module, by the step each stands at (a terminal step once settled).
_SAGAS_BY_STEP = text("SELECT step, COUNT(*) FROM ordering_sagas GROUP BY step")


async def storage_families(runtime: Runtime | None) -> list[Metric]:
    """Outbox backlog and the age of its oldest record, dead letters, and sagas by step, for
    each module of this process that keeps its state in SQL."""
    backlog = GaugeMetricFamily(
        "cleave_outbox_backlog",
        "Deliveries waiting in a module's outbox (not yet delivered)",
        labels=["module"],
    )
    oldest = GaugeMetricFamily(
        "cleave_outbox_oldest_age_seconds",
        "Age of the oldest delivery waiting in a module's outbox (0 when it is empty)",
        labels=["module"],
    )
    dead = GaugeMetricFamily(
        "cleave_dead_letters",
        "Deliveries a module gave up on, waiting for an operator (cleave dead-letters)",
        labels=["module"],
    )
    sagas = GaugeMetricFamily(
        "cleave_sagas",
        "Order sagas by the step they stand at",
        labels=["step"],
    )
    if runtime is not None and runtime.receiver is not None:
        storages: dict[str, SqlStorage] = {}
        for local in runtime.receiver.dispatcher.local.values():
            if isinstance(local.storage, SqlStorage):
                storages[local.endpoint.module] = local.storage
        now = runtime.clock.now()
        for module, storage in sorted(storages.items()):
            tables = storage.tables
            try:
                async with storage.database.engine.connect() as connection:
                    waiting, first = (
                        await connection.execute(
                            select(func.count(), func.min(tables.outbox.c.created_at))
                        )
                    ).one()
                    failed = await connection.scalar(
                        select(func.count()).select_from(tables.dead_letters)
                    )
                    steps = (
                        (await connection.execute(_SAGAS_BY_STEP)).all()
                        if module == "ordering"
                        else []
                    )
            except Exception:
                # A scrape while the database is away shows the other modules, and says so.
                log.warning("could not read the outbox of %s for /metrics", module, exc_info=True)
                continue
            backlog.add_metric([module], waiting)
            oldest.add_metric([module], max(0.0, now - first) if first is not None else 0.0)
            dead.add_metric([module], failed or 0)
            for step, count in steps:
                sagas.add_metric([step], count)
    return [backlog, oldest, dead, sagas]


def circuit_families() -> list[Metric]:
    """The state of each circuit breaker of this process, one gauge per state (1: current)."""
    family = GaugeMetricFamily(
        "cleave_circuit_state",
        "State of the circuit breaker of a remote target (another service's instance, the "
        "payment provider): 1 for the state it is in",
        labels=["target", "state"],
    )
    for target, current in sorted(circuit_states().items()):
        for state in ("closed", "opened", "half-opened"):
            family.add_metric([target, state], 1.0 if state == current else 0.0)
    return [family]
