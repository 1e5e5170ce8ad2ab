"""The OpenAPI document tells the truth (issue 13): who may call each operation, and every
constraint the API enforces, so a client generated from it sends nothing the API refuses.

Schemathesis generates requests from the document a real ``cleave run`` serves and sends
them, signed in as an admin wherever the document asks for the bearer token (and only there:
an operation that needs a token but does not say so answers 401, a failure here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from entrypoints.app import create_app
from entrypoints.settings import Settings
from tests.support.processes import Process, start_app

ADMIN_EMAIL, ADMIN_PASSWORD = "root@example.com", "root horse battery staple"
BEARER = [{"BearerToken": []}]

#: Refusals that depend on what the schema cannot say, by operation: the state of the shop
#: (an order names a product that does not exist, mixes currencies, costs more than an order
#: may, or reuses a key for another order) or a judgement no schema expresses (zxcvbn's
#: strength score; an email that outgrows 254 characters only once in lower case). Each is
#: documented in the operation's description; any other 400 or 422 is a lie of the schema.
UNEXPRESSIBLE = {
    ("POST", "/api/v1/identity/register"): {
        (400, "identity.weak_password"),
        (400, "identity.invalid_email"),
    },
    ("POST", "/api/v1/orders"): {
        (400, "ordering.unknown_sku"),
        (400, "ordering.mixed_currencies"),
        (400, "ordering.order_too_large"),
        (422, "ordering.idempotency_key_reused"),
    },
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("openapi")
    process: Process
    process, url = start_app(
        directory,
        {
            "CLEAVE_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'shop.db'}",
            "CLEAVE_PASSWORD_HASH_COST": "low",
            "CLEAVE_PAYMENT_PROVIDER_URL": "http://127.0.0.1:9",  # orders fail to pay: fine
            "CLEAVE_LOG_LEVEL": "WARNING",
            "CLEAVE_ADMIN_EMAIL": ADMIN_EMAIL,
            "CLEAVE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            # Limits are not what this test is about: generous ones keep 429 out of it.
            "CLEAVE_AUTH_RATE_LIMIT_PER_MINUTE": "100000",
            "CLEAVE_LOGIN_FAILURES_PER_ACCOUNT": "100000",
            "CLEAVE_MAX_OPEN_ORDERS": "100000",
            "CLEAVE_ORDERS_PER_MINUTE": "100000",
        },
    )
    try:
        yield url
    finally:
        process.close()


@pytest.fixture(scope="module")
def admin_token(shop: str) -> str:
    answer = httpx.post(
        f"{shop}/api/v1/identity/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    return str(answer.json()["access_token"])


def document() -> dict[str, Any]:
    """The document ``cleave run`` serves (the served one is compared with it below)."""
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    return app.openapi_schema.to_schema()


CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "positive", "max-examples": 12},
        "checks": {
            # Unknown ids (404) and duplicates (409) are refusals for the state of the shop,
            # not for the form of a request.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409"]},
        },
        "operations": [
            {
                # Valid credentials of an account that does not exist: refused, rightly.
                "include-path": "/api/v1/identity/login",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401"]}},
            }
        ],
    }
)
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)


def valid_data_is_accepted(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Schemathesis' ``positive_data_acceptance``, except for the refusals the schema cannot
    express (``UNEXPRESSIBLE``), recognised by their problem ``code``."""
    if response.status_code in (400, 422):
        body = _json(response)
        code = body.get("code") if isinstance(body, dict) else None
        allowed = UNEXPRESSIBLE.get((case.method.upper(), case.operation.path), set())
        if (response.status_code, code) in allowed:
            return None
    return positive_data_acceptance(ctx, response, case)


def _json(response: Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_requests_valid_per_schema_are_accepted_and_answered_as_documented(
    case: Case, shop: str, admin_token: str
) -> None:
    # The token goes only where the document asks for it: an operation that needs one but
    # does not say so answers 401, which fails here.
    declared = case.operation.definition.raw.get("security")
    headers = {"Authorization": f"Bearer {admin_token}"} if declared else None
    case.call_and_validate(
        base_url=shop,
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            valid_data_is_accepted,
        ],
        timeout=30,
    )


def test_the_served_document_is_the_one_tested(shop: str) -> None:
    served = httpx.get(f"{shop}/schema/openapi.json", timeout=30).json()
    assert served == json.loads(json.dumps(document()))


def test_public_operations_need_no_token_and_protected_ones_the_bearer_scheme(
    tmp_path: Path,
) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}"))
    document = app.openapi_schema.to_schema()
    assert "security" not in document  # nothing is required of every operation
    public: dict[tuple[str, str], bool] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                public[(method.lower(), route.path_format)] = bool(
                    handler.opt.get("exclude_from_auth")
                )
    seen = set()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            seen.add((method, path))
            if public[(method, path)]:
                assert "security" not in operation, (method, path)
            else:
                assert operation.get("security") == BEARER, (method, path)
    assert ("post", "/api/v1/identity/login") in seen
    assert public[("post", "/api/v1/identity/register")]
    assert not public[("post", "/api/v1/orders")]
