"""``/health/live``, ``/health/ready`` and ``/metrics`` of a worker, for ``cleave up``,
orchestrators and Prometheus.

A worker serves no API, but whoever starts it needs to know when it is ready, and what it
handled. The server runs
on the worker's event loop. Every worker process of a service binds the same port with
``SO_REUSEPORT``, so that any number of them can run (the kernel spreads the probes), and a
probe (or scrape) answers for the process that took it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

log = logging.getLogger("cleave.queues.health")

Checks = Callable[[], Awaitable[dict[str, bool]]]
#: The process's metrics in Prometheus' text format (read from its databases as well).
Metrics = Callable[[], Awaitable[bytes]]


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        checks: Checks,
        metrics: Metrics | None = None,
        identity: Mapping[str, object] | None = None,
    ) -> None:
        self.host = host
        #: Said with each readiness answer: which process this is (``cleave up`` checks it).
        self.identity = dict(identity or {})
        self.port = port
        self._checks = checks
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        #: Set when the worker begins to stop: no longer ready, still live.
        self.stopping = False

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health/live", self._live)
        app.router.add_get("/health/ready", self._ready)
        if self._metrics is not None:
            app.router.add_get("/metrics", self._scrape)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_port=True)
        await site.start()
        self._runner = runner
        log.info("health probes on http://%s:%d/health/ready", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _ready(self, request: web.Request) -> web.Response:
        checks = await self._checks()
        checks["accepting work"] = not self.stopping
        ok = all(checks.values())
        body = {**self.identity, "status": "ok" if ok else "unavailable", "checks": checks}
        return web.json_response(body, status=200 if ok else 503)

    async def _scrape(self, request: web.Request) -> web.Response:
        assert self._metrics is not None
        page = await self._metrics()
        return web.Response(body=page, content_type="text/plain", charset="utf-8")
