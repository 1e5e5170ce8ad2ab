"""The HTTP request metrics of litestar's Prometheus middleware, at a fraction of its cost.

litestar's middleware builds a ``Request`` through a generic alias, parses the URL for a
label it then replaces with the route's template, and asks prometheus-client for each
labelled child four times per request (a lock and a validation each): about 4% of the
server's CPU per order at 100 orders/s (issue 12, py-spy). ``RequestMetrics`` keeps the same
metrics (names, label names and order, buckets: they are litestar's objects) and looks each
labelled child up once per (method, route template, status). It takes this lean path only
for what ``entrypoints.app.HTTP_METRICS`` asks (route templates, no extra labels, no
exemplars, no excluded methods); any other configuration gets litestar's own ``__call__``.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

#: Labelled children kept at most per middleware; route templates, methods and statuses are
#: few, so this bounds only what a bug could make of them.
_KEPT = 4096


class RequestMetrics(PrometheusMiddleware):
    """litestar's Prometheus middleware with its labelled children looked up once."""

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        super().__init__(app, config)
        self._lean = bool(
            config.group_path
            and not config.labels
            and not config.exemplars
            and not config.excluded_http_methods
        )
        self._in_progress: dict[tuple[str, str], Any] = {}
        #: (method, path, status) -> (requests, duration, errors or None)
        self._finished: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._lean:
            await super().__call__(scope, receive, send)
            return
        fields: Any = scope  # litestar's scope types do not name the route's template
        kind: str = fields["type"]
        method: str = fields["method"] if kind == "http" else kind
        path: str = fields["path_template"]
        in_progress = self._in_progress.get((method, path))
        if in_progress is None:
            labels = self._labels(method, path, 200)
            in_progress = self.requests_in_progress(labels).labels(*labels.values())
            self._keep(self._in_progress, (method, path), in_progress)
        status = 200
        duration = 0.0
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            nonlocal status, duration
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                duration = time.perf_counter() - started
            await send(message)

        in_progress.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            in_progress.dec()
            finished = self._finished.get((method, path, status))
            if finished is None:
                finished = self._children(method, path, status)
            requests, durations, errors = finished
            if errors is not None:
                errors.inc()
            requests.inc()
            durations.observe(duration)

    def _labels(self, method: str, path: str, status: int) -> dict[str, str | int | float]:
        # The order of litestar's ``_get_default_labels``: the metrics' label names.
        return {
            "method": method,
            "path": path,
            "status_code": status,
            "app_name": self._config.app_name,
        }

    def _children(self, method: str, path: str, status: int) -> tuple[Any, Any, Any]:
        labels = self._labels(method, path, status)
        values = [*labels.values()]
        errors = self.requests_error_count(labels).labels(*values) if status >= 500 else None
        finished = (
            self.request_count(labels).labels(*values),
            self.request_time(labels).labels(*values),
            errors,
        )
        self._keep(self._finished, (method, path, status), finished)
        return finished

    @staticmethod
    def _keep(kept: dict[Any, Any], key: Any, value: Any) -> None:
        if len(kept) >= _KEPT:
            kept.clear()
        kept[key] = value
