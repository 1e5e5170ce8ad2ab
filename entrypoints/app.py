"""The ASGI app of the monolith: every module's routes over one bus, in one process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.enums import MediaType
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin
from litestar.response import Response

from adapters.http.auth import jwt_auth, provide_principal, role_guard
from adapters.http.problems import EXCEPTION_HANDLERS, refuse_nul_characters
from adapters.sqlalchemy.database import Database
from entrypoints.bootstrap import bootstrap, create_tables, shop_modules
from entrypoints.settings import Settings, settings_from_environment
from kernel.bus import Bus
from kernel.messages import SYSTEM
from kernel.runtime import Runtime

log = logging.getLogger("cleave.app")


def provide_bus(state: State) -> Bus:
    runtime: Runtime = state.runtime
    return runtime.bus


@get("/health/live", exclude_from_auth=True, tags=["health"], summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", exclude_from_auth=True, tags=["health"], summary="Ready for traffic")
async def ready(state: State) -> Response[dict[str, Any]]:
    runtime: Runtime | None = state.get("runtime")
    database: Database | None = state.get("database")
    checks = {
        "runtime": runtime is not None and runtime.started,
        "database": database is not None and await database.ping(),
    }
    ok = all(checks.values())
    return Response(
        {"status": "ok" if ok else "unavailable", "checks": checks},
        status_code=200 if ok else 503,
    )


SWAGGER = SwaggerRenderPlugin()


@get("/docs", exclude_from_auth=True, include_in_schema=False, media_type=MediaType.HTML)
async def docs(request: Request[Any, Any, Any]) -> bytes:
    """The interactive API page (Swagger UI), also at /schema/swagger."""
    return SWAGGER.render(request, request.app.openapi_schema.to_schema())


def _rate_limited(request: Request[Any, Any, Any]) -> bool:
    # Only routes that ask for it (login, register) are throttled.
    return bool(request.route_handler.opt.get("rate_limited"))


def create_app(settings: Settings | None = None) -> Litestar:
    """The monolith: all modules, their routes, and the runtime started in the lifespan."""
    settings = settings or settings_from_environment()
    modules = shop_modules()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        from adapters.payments.http_provider import HttpPaymentProvider
        from adapters.payments.sandbox import SandboxPaymentProvider
        from modules.identity.contracts import EnsureAdmin

        for warning in settings.warnings():
            log.warning(warning)
        database = Database(settings.database_url, schema=settings.database_schema)
        await create_tables(database, modules)
        sandbox: SandboxPaymentProvider | None = None
        provider_url = settings.payment_provider_url
        if provider_url is None:
            sandbox = SandboxPaymentProvider()
            sandbox.start()
            provider_url = sandbox.url
            log.info("sandbox payment provider listening on %s", provider_url)
        provider = HttpPaymentProvider.from_settings(provider_url, settings)
        runtime = bootstrap(
            database=database,
            transport=settings.bus,
            payment_provider=provider,
            settings=settings,
            modules=modules,
        )
        await runtime.start()
        app.state.runtime = runtime
        app.state.database = database
        try:
            if settings.admin_email and settings.admin_password:
                await runtime.bus.send(
                    EnsureAdmin(email=settings.admin_email, password=settings.admin_password),
                    principal=SYSTEM,
                )
                log.info("admin account %s is ready", settings.admin_email)
            log.info(
                "cleave is serving with %s over the %s bus",
                database.display_url,
                settings.bus,
            )
            yield
        finally:
            await runtime.stop(settings.shutdown_grace_seconds)
            await provider.close()
            if sandbox is not None:
                sandbox.stop()
            await database.dispose()

    auth = jwt_auth(settings.jwt_secret, settings.jwt_ttl_seconds)
    rate_limit = RateLimitConfig(
        rate_limit=("minute", settings.auth_rate_limit_per_minute),
        check_throttle_handler=_rate_limited,
    )
    routes: list[Any] = [live, ready, docs]
    for module in modules:
        routes.extend(module.routes)
    return Litestar(
        route_handlers=routes,
        lifespan=[lifespan],
        dependencies={
            "bus": Provide(provide_bus, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        on_app_init=[auth.on_app_init],
        guards=[role_guard],
        before_request=refuse_nul_characters,
        middleware=[rate_limit.middleware],
        openapi_config=OpenAPIConfig(
            title="Cleave shop",
            version="0.1.0",
            description="A modular monolith: identity, catalog, inventory, ordering, "
            "payments and notifications over one message bus.",
            path="/schema",
            render_plugins=[SWAGGER, ScalarRenderPlugin(path="/scalar")],
        ),
        request_max_body_size=settings.max_body_bytes,
        state=State({"settings": settings}),
        # Logging is the process's business (the CLI configures it), not the framework's.
        logging_config=None,
    )
