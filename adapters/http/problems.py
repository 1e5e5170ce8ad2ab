"""Every error leaves the edge as an RFC 9457 problem (``application/problem+json``).

Typed domain errors keep their meaning (``NotFound`` is 404, ``Rejected`` 400 naming the
field...), validation failures name each offending field, and nothing a client sends can
produce a 500: only a bug can, and then the body says nothing internal.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_500_INTERNAL_SERVER_ERROR

from kernel.errors import (
    CleaveError,
    Conflict,
    Forbidden,
    InternalError,
    NotFound,
    PoisonMessage,
    Rejected,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger("cleave.http")

PROBLEM_JSON = "application/problem+json"

_STATUS: dict[type[CleaveError], int] = {
    NotFound: 404,
    Conflict: 409,
    Rejected: 400,
    Forbidden: 403,
    Unauthenticated: 401,
    Unavailable: 503,
    InternalError: 500,
}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update({key: value for key, value in extra.items() if value is not None})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def cleave_error(request: Request[Any, Any, Any], error: CleaveError) -> Response[Any]:
    status = next(
        (code for cls, code in _STATUS.items() if isinstance(error, cls)),
        HTTP_500_INTERNAL_SERVER_ERROR,
    )
    if status >= 500:
        log.warning("%s %s: %r", request.method, request.url.path, error)
    headers = {"Retry-After": "1"} if status == 503 else None
    return problem(status, error.detail, code=error.code, field=error.field, headers=headers)


_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def field_of(path: str) -> str:
    """``$.lines[0].sku`` as ``lines[0].sku``."""
    return path.lstrip(".")


def validation_error(
    request: Request[Any, Any, Any], error: msgspec.ValidationError
) -> Response[Any]:
    match = _AT.match(str(error))
    message = match.group("message") if match else str(error)
    field = field_of(match.group("path") or "") if match else ""
    errors = [{"field": field or None, "message": message}]
    detail = f"{field}: {message}" if field else message
    return problem(HTTP_400_BAD_REQUEST, detail, field=field or None, errors=errors)


_NAMED = re.compile(r"field `(?P<field>[^`]+)`")


def _field_of_item(item: dict[str, Any]) -> str | None:
    # Litestar names the handler parameter ("data") for body errors; the message names the
    # real field ("Object missing required field `email`", "... - at `$.lines[0].sku`").
    key = item.get("key")
    message = str(item.get("message") or "")
    if item.get("source") == "body" or key == "data":
        match = _AT.match(message)
        if match and match.group("path"):
            return field_of(match.group("path"))
        named = _NAMED.search(message)
        if named:
            return named.group("field")
    return str(key) if key else None


def http_exception(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    status = error.status_code
    headers = dict(error.headers or {})
    if isinstance(error, ValidationException):
        errors = []
        for item in error.extra if isinstance(error.extra, list) else []:
            if isinstance(item, dict):
                errors.append(
                    {
                        "field": _field_of_item(item),
                        "message": item.get("message"),
                        "in": item.get("source"),
                    }
                )
        fields = [str(item["field"]) for item in errors if item.get("field")]
        detail = "invalid " + ", ".join(fields) if fields else str(error.detail)
        return problem(
            status,
            detail,
            field=fields[0] if fields else None,
            errors=errors or None,
            headers=headers,
        )
    if status == 429 and "Retry-After" not in headers:
        reset = next((v for k, v in headers.items() if k.lower() == "ratelimit-reset"), None)
        headers["Retry-After"] = str(reset or 60)
    if status >= 500:
        log.error("%s %s failed: %r", request.method, request.url.path, error, exc_info=error)
        return problem(status, "the server failed; the error is logged", headers=headers)
    return problem(status, str(error.detail), headers=headers)


async def refuse_nul_characters(request: Request[Any, Any, Any]) -> None:
    """A NUL character is valid JSON but no database stores it in text: refuse it at the
    edge (400) rather than fail deep inside (500). Internal frames were checked at the edge
    already, and a MessagePack one is binary."""
    if request.url.path.startswith("/internal/"):
        return
    if "%00" in request.url.query or "%00" in request.url.path:
        raise ValidationException("NUL characters are not allowed in the URL")
    if request.method in ("POST", "PUT", "PATCH") and b"\\u0000" in await request.body():
        raise ValidationException("NUL characters are not allowed in the body")


def nested_too_deep(request: Request[Any, Any, Any], error: RecursionError) -> Response[Any]:
    """msgspec decodes a body recursively and stops at Python's recursion limit: a body nested
    that deep is the client's doing (400), on every route. Any other RecursionError is a bug."""
    if "deserializ" not in str(error):
        return unexpected(request, error)
    return problem(HTTP_400_BAD_REQUEST, "the body is nested too deeply", code="too_deep")


def refused_upstream(request: Request[Any, Any, Any], error: PoisonMessage) -> Response[Any]:
    """The service this process asked could not read the request: it runs other contracts,
    or it is not the service the topology says (a deployment fault, not the client's): 502."""
    log.error(
        "%s %s: the service asked refused the request: %s",
        request.method,
        request.url.path,
        error.reason,
    )
    return problem(
        502,
        "a service behind this one refused the request; the error is logged",
        code="upstream_refused",
    )


def unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "the server failed; the error is logged")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    CleaveError: cleave_error,
    PoisonMessage: refused_upstream,
    msgspec.ValidationError: validation_error,
    HTTPException: http_exception,
    RecursionError: nested_too_deep,
    Exception: unexpected,
}
