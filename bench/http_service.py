"""The server processes of item 3: the trivial module as a service, and the floor beside it.

``python -m bench.http_service trivial --port N`` serves the trivial module (``bench/trivial``:
``Ping`` and ``Peek``, handlers that return a constant) the way ``cleave serve`` serves a
module of a split topology: the same ``entrypoints.app.process_app`` (middleware, auth
guard, rate limit, problem handlers) around ``RunningProcess``, whose runtime answers the
signed internal endpoints of ``adapters.bus.http.server`` in MessagePack and JSON. The only
difference from a shop service is the module it hosts: the trivial module is registered in
the composition root's table of module packages (``SHOP_PACKAGES``) in this process only.

``python -m bench.http_service internal --port N`` serves the same runtime behind the internal
endpoints alone (``adapters.bus.http.server.internal_app``: no public-API middleware, guard,
rate limit or body check around them), which tells the transport's own cost from what the
service app wraps around it.

``python -m bench.http_service floor --port N`` serves ``bench.http_app`` (``POST /bare``: a
constant body), the floor of a request on this stack.

Both run under uvicorn with the settings ``cleave serve`` uses (one worker, the CLI's logging
configuration at ``CLEAVE_LOG_LEVEL``, no uvicorn logging configuration), so that the
difference between them is the transport's work, not the server's configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from litestar import Litestar

#: The trivial module, addressed like a shop module.
MODULE = "bench"
PACKAGE = "bench.trivial"


def trivial_app() -> Litestar:
    """The ASGI app of a service hosting only the trivial module (an ASGI factory)."""
    from entrypoints.app import process_app
    from entrypoints.bootstrap import SHOP_PACKAGES
    from entrypoints.process import ProcessPlan
    from entrypoints.settings import settings_from_environment

    SHOP_PACKAGES.setdefault(MODULE, PACKAGE)
    # No tables: the module keeps no state, so the process opens no database.
    plan = ProcessPlan(name=MODULE, hosted=(MODULE,), public=False, database_urls={})
    return process_app(plan, settings_from_environment())


def internal_only_app() -> Litestar:
    """The trivial module's runtime behind the internal endpoints alone (an ASGI factory)."""
    from adapters.bus.http.server import internal_app
    from adapters.bus.http.signing import Verifier
    from entrypoints.bootstrap import SHOP_PACKAGES
    from entrypoints.process import ProcessPlan, RunningProcess
    from entrypoints.settings import settings_from_environment

    SHOP_PACKAGES.setdefault(MODULE, PACKAGE)
    settings = settings_from_environment()
    plan = ProcessPlan(name=MODULE, hosted=(MODULE,), public=False, database_urls={})
    process = RunningProcess(plan, settings)
    verifier = Verifier(settings.service_key, settings.service_signature_window_seconds)
    app = internal_app(lambda: process.receivers or None, verifier, frozenset(plan.hosted))

    async def start() -> None:
        await process.start()

    async def stop() -> None:
        await process.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return app


TARGETS = {
    "trivial": ("bench.http_service:trivial_app", True),
    "internal": ("bench.http_service:internal_only_app", True),
    "floor": ("bench.http_app:app", False),
}


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    from entrypoints.cli import configure_logging
    from entrypoints.settings import settings_from_environment

    parser = argparse.ArgumentParser(prog="python -m bench.http_service", description=__doc__)
    parser.add_argument("which", choices=tuple(TARGETS))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    arguments = parser.parse_args(argv)
    settings = settings_from_environment()
    configure_logging(settings.log_level)
    target, factory = TARGETS[arguments.which]
    uvicorn.run(
        target,
        factory=factory,
        host=arguments.host,
        port=arguments.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
