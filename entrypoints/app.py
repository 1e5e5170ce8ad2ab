"""The ASGI apps: the monolith, and each service of a split topology (the same code)."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.prometheus import PrometheusConfig
from litestar.response import Response

from adapters.auth.accounts import CurrentRoles
from adapters.http.auth import jwt_auth, provide_principal, role_guard
from adapters.http.metrics import metrics_route
from adapters.http.openapi import StrictStructSchemaPlugin, describe_edge
from adapters.http.problems import EXCEPTION_HANDLERS, refuse_nul_characters
from adapters.http.request_metrics import RequestMetrics
from adapters.http.slow_clients import body_deadline
from adapters.http.throttle import Throttle, storage_uri
from adapters.observability.http_spans import request_spans
from adapters.observability.requests import request_log
from entrypoints.bootstrap import SHOP_PACKAGES
from entrypoints.process import ProcessPlan, RunningProcess, monolith_plan, service_plan
from entrypoints.settings import Settings, settings_from_environment
from entrypoints.topology import load_topology
from kernel.bus import Bus
from kernel.messages import Principal
from kernel.runtime import Runtime

log = logging.getLogger("cleave.app")

#: Requests by method, route template and status, and their latency (litestar's Prometheus
#: metrics, counted by ``RequestMetrics``; probes and scrapes are left out).
HTTP_METRICS = PrometheusConfig(
    app_name="cleave",
    prefix="cleave_http",
    group_path=True,
    exclude=["^/metrics$", "^/health/"],
    middleware_class=RequestMetrics,
)


def provide_bus(state: State, principal: NamedDependency[Principal | None]) -> Bus:
    """The process's bus. It names ``principal`` only so that litestar resolves the two one
    after the other: the dependencies of one level are resolved in an anyio task group, two
    tasks per request, about 5% of the server's CPU per order (issue 12); ``principal``
    cannot fail, so every route that has a bus has it as before."""
    del principal
    runtime: Runtime = state.runtime
    return runtime.bus


@get("/health/live", exclude_from_auth=True, tags=["health"], summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", exclude_from_auth=True, tags=["health"], summary="Ready for traffic")
async def ready(state: State) -> Response[dict[str, Any]]:
    """Ready when the runtime runs and every database of the process answers; a process
    that calls other services also says which of them answer (without failing for them:
    the rest of the API still works while one module is down)."""
    runtime: Runtime | None = state.get("runtime")
    process: RunningProcess | None = state.get("process")
    databases = process.databases if process is not None else {}
    answers = {id(db): await db.ping() for db in databases.values()}
    checks: dict[str, bool] = {
        "runtime": runtime is not None and runtime.started,
        "database": all(answers.values()),  # a gateway that hosts no module has none
    }
    ok = all(checks.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
    if process is not None:
        # Which process this is: ``cleave up`` makes sure the one on a port is its child.
        body["modules"] = list(process.plan.hosted)
        body["instance"] = process.settings.instance
    if len(answers) > 1:
        body["databases"] = {module: answers[id(db)] for module, db in databases.items()}
    if process is not None and process.plan.remote:
        body["remote"] = await remote_health(process)
    return Response(body, status_code=200 if ok else 503)


async def remote_health(process: RunningProcess) -> dict[str, dict[str, bool]]:
    """Whether each instance of each remote module answers its liveness probe (over HTTP),
    or whether the broker of the modules reached over queues answers."""
    found: dict[str, dict[str, bool]] = {}
    broker: bool | None = None
    for module, where in process.plan.remote.items():
        if where.transport != "http":
            if broker is None:
                client = process.queue_client
                broker = client is not None and await client.alive()
            found[module] = {"broker": broker}
            continue
        found[module] = {}
        for url in where.addresses:
            found[module][url] = process.http_client is not None and (
                await process.http_client.alive(url)
            )
    return found


SWAGGER = SwaggerRenderPlugin()


@get("/docs", exclude_from_auth=True, include_in_schema=False, media_type=MediaType.HTML)
async def docs(request: Request[Any, Any, Any]) -> bytes:
    """The interactive API page (Swagger UI), also at /schema/swagger."""
    return SWAGGER.render(request, request.app.openapi_schema.to_schema())


def create_app(settings: Settings | None = None) -> Litestar:
    """The monolith (``cleave run``): every module, its routes, one process."""
    settings = settings or settings_from_environment()
    return process_app(monolith_plan(settings), settings, shared_counts=False)


def service_app() -> Litestar:
    """The app of one service of a topology, for ``cleave serve`` (an ASGI factory: reads
    ``CLEAVE_TOPOLOGY`` and ``CLEAVE_SERVICE`` from the environment)."""
    settings = settings_from_environment()
    topology = load_topology(os.environ["CLEAVE_TOPOLOGY"], list(SHOP_PACKAGES))
    service = topology.service(os.environ["CLEAVE_SERVICE"])
    # Instances of a gateway must share their rate limit counts; a deployment that runs
    # Redis for its queues has a place to keep them.
    shared = service.instances > 1 or any(
        topology.transport_of(module) == "redis" for module in topology.modules
    )
    return process_app(service_plan(topology, service), settings, shared_counts=shared)


def process_app(plan: ProcessPlan, settings: Settings, *, shared_counts: bool = False) -> Litestar:
    """The HTTP face of one process: the public API if ``plan.public``, and the internal
    endpoints of the modules it hosts when other processes call them. ``shared_counts``:
    other processes serve the same public API, so the rate limits count in Redis (unless
    ``CLEAVE_RATE_LIMIT_STORAGE`` says otherwise)."""
    process = RunningProcess(plan, settings)
    # Every token is checked against identity's current answer (kept a few seconds).
    current_roles = CurrentRoles(lambda: process.runtime.bus if process.runtime else None)
    auth = jwt_auth(settings.jwt_secret, settings.jwt_ttl_seconds, current_roles)
    app = Litestar(
        route_handlers=_routes(process, settings),
        lifespan=[_lifespan(process)],
        dependencies={
            "bus": Provide(provide_bus, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        # The server span of a request (when the process traces) wraps everything, the
        # authentication's look at the caller's roles included: it comes last, outermost.
        on_app_init=[auth.on_app_init, *request_spans()],
        guards=[role_guard],
        before_request=refuse_nul_characters,
        middleware=[
            request_log,
            HTTP_METRICS.middleware,
            body_deadline(settings.body_timeout_seconds),
            _throttle(settings, shared_counts).middleware,
        ],
        openapi_config=_openapi_config() if plan.public else None,
        plugins=[StrictStructSchemaPlugin()],
        request_max_body_size=settings.max_body_bytes,
        state=State({"settings": settings, "plan": plan}),
        # Logging is the process's business (the CLI configures it), not the framework's.
        logging_config=None,
    )
    if plan.public:
        describe_edge(app, auth)
    return app


def _lifespan(process: RunningProcess) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Start the process's runtime with the app, and stop it with the app (or a failed start)."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            app.state.runtime = await process.start()
            app.state.process = process
            yield
        finally:
            await process.stop()

    return lifespan


def _routes(process: RunningProcess, settings: Settings) -> list[Any]:
    """Health and metrics always; the docs and the shop's routes on the public face; the
    internal endpoint where the process hosts modules."""
    plan = process.plan
    routes: list[Any] = [live, ready, metrics_route(lambda state: state.get("runtime"))]
    if plan.public:
        routes.append(docs)
        routes.extend(shop_routes())
    if plan.hosted:
        routes.append(_internal_router(process, settings))
    return routes


def _internal_router(process: RunningProcess, settings: Settings) -> Any:
    """The endpoint other processes call this one's modules through, signed requests only."""
    from adapters.bus.http.server import internal_router
    from adapters.bus.http.signing import Verifier
    from adapters.observability.messages import OBSERVER

    plan = process.plan
    if plan.split:
        # Other processes call this one's modules over HTTP.
        OBSERVER.wire = "http"
    verifier = Verifier(settings.service_key, settings.service_signature_window_seconds)
    return internal_router(lambda: process.receivers or None, verifier, frozenset(plan.hosted))


def _throttle(settings: Settings, shared_counts: bool) -> Throttle:
    """The rate limits of logins and registrations, counted in this process or in Redis."""
    storage = settings.rate_limit_storage
    if storage == "auto":
        storage = "redis" if shared_counts else "memory"
    return Throttle(
        per_address_per_minute=settings.auth_rate_limit_per_minute,
        account_failures=settings.login_failures_per_account,
        account_window_seconds=settings.login_failure_window_seconds,
        storage=storage_uri(storage, settings.redis_url),
        key_prefix=settings.queue_namespace,
    )


def _openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Cleave shop",
        version="0.1.0",
        description="A modular monolith: identity, catalog, inventory, ordering, "
        "payments and notifications over one message bus.",
        path="/schema",
        render_plugins=[SWAGGER, ScalarRenderPlugin(path="/scalar")],
    )


def shop_routes(names: list[str] | None = None) -> list[Any]:
    """The public routes of the shop's modules: their ``api`` only, never their handlers."""
    found: list[Any] = []
    for name in names or list(SHOP_PACKAGES):
        found.extend(importlib.import_module(f"{SHOP_PACKAGES[name]}.api").routes)
    return found
