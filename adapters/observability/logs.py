"""One log format for the whole process, through structlog.

Every line goes through the standard ``logging`` module (the kernel's, the modules',
uvicorn's, dramatiq's and alembic's loggers alike) and is rendered by structlog's
``ProcessorFormatter``: readable columns in a terminal, one JSON object per line with
``CLEAVE_LOG_FORMAT=json``. Structured fields travel in a record's ``extra`` and become keys
of the line, so the hot paths need nothing but the standard library.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

LogFormat = Literal["console", "json"]

#: The ``extra`` key under which a record carries its structured fields: a dict, whose keys
#: become keys of the line (``module`` or ``message`` could not be ``extra`` keys themselves,
#: as ``logging.LogRecord`` has attributes of those names).
FIELDS = "cleave"


def _merge_fields(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    fields = event.pop(FIELDS, None)
    if isinstance(fields, dict):
        event.update((key, value) for key, value in fields.items() if value is not None)
    return event


def _drop_color_message(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    # uvicorn passes a second, ANSI-coloured copy of its message as an ``extra``; the line
    # already has the plain one.
    event.pop("color_message", None)
    return event


#: The loggers whose lines the process shows, besides its own ("cleave...").
_QUIET_AT_INFO = (
    # alembic announces each of its plugins at INFO whenever it is imported.
    "alembic.runtime.plugins",
    # The request log line (adapters.observability.requests) replaces uvicorn's access log.
    "uvicorn.access",
)


def formatter(log_format: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    """The formatter that renders a standard ``logging`` record as a structlog line."""
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        _merge_fields,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.dict_tracebacks)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )


def configure_logging(level: str, log_format: LogFormat = "console") -> None:
    """Send every log record of the process to standard error in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "cleave", False):
            root.removeHandler(old)
    handler.cleave = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET_AT_INFO:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn and dramatiq install handlers of their own only when none is configured; make
    # theirs propagate to the root handler instead, so that one format covers them.
    for name in ("uvicorn", "uvicorn.error", "dramatiq"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
