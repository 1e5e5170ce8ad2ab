"""What the edge adds to the OpenAPI document so that it tells the truth about the edge's own
behaviour: every error is an RFC 9457 problem (``adapters.http.problems``), a protected
operation may answer 401 and 403, a throttled one 429, one with a body 413, and a body
with a field the struct does not know is refused (``forbid_unknown_fields``).

Modules declare what only they know (the statuses of their refusals, their constraints);
this fills in the rest from the same settings the edge enforces: an operation the JWT auth
does not exclude declares the bearer scheme, and no other does."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)
from litestar.security.jwt import JWTAuth
from litestar.typing import FieldDefinition

from adapters.http.problems import PROBLEM_JSON

_STRING, _INTEGER, _NULL = OpenAPIType.STRING, OpenAPIType.INTEGER, OpenAPIType.NULL

PROBLEM_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    title="Problem",
    description="An RFC 9457 problem: every error of the API is answered with one.",
    required=["type", "title", "status", "detail"],
    properties={
        "type": Schema(type=_STRING),
        "title": Schema(type=_STRING),
        "status": Schema(type=_INTEGER),
        "detail": Schema(type=_STRING),
        "code": Schema(type=_STRING, description="A stable error code, e.g. `catalog.x`."),
        "field": Schema(type=_STRING, description="The offending field, when there is one."),
        "errors": Schema(
            type=OpenAPIType.ARRAY,
            description="Each invalid field of a refused request.",
            items=Schema(
                type=OpenAPIType.OBJECT,
                properties={
                    "field": Schema(type=[_STRING, _NULL]),
                    "message": Schema(type=[_STRING, _NULL]),
                    "in": Schema(type=[_STRING, _NULL]),
                },
            ),
        ),
    },
)
_PROBLEM_REF = Reference(ref="#/components/schemas/Problem")

_DEFAULT_DESCRIPTIONS = {
    400: "Invalid input: the problem names the `field`",
    401: "No valid bearer token",
    403: "The caller lacks the role this needs",
    413: "The body is larger than the limit",
    429: "Too many requests: retry after `Retry-After` seconds",
}


#: What the edge refuses in every string it is sent (``refuse_nul_characters``).
NO_NUL = "^[^\\x00]*$"
_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusive_minimum", "lt": "exclusive_maximum"}


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """msgspec structs as litestar describes them, plus what litestar leaves out:
    ``additionalProperties: false`` for a struct that refuses unknown fields, and a bound
    of 0 on an optional number (it drops falsy bounds there: ``price_cents >= 0`` read as
    any integer). Either way a client generated from the document would send what the API
    refuses."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        struct = field_definition.type_
        if struct.__struct_config__.forbid_unknown_fields:
            schema.additional_properties = False
        info = msgspec.inspect.type_info(struct)
        for field in getattr(info, "fields", ()):
            prop = (schema.properties or {}).get(field.encode_name)
            if isinstance(prop, Schema):
                _restore_bounds(prop, field.type)
        return schema


def _restore_bounds(schema: Schema, kind: msgspec.inspect.Type) -> None:
    kinds = kind.types if isinstance(kind, msgspec.inspect.UnionType) else (kind,)
    for each in kinds:
        if isinstance(each, msgspec.inspect.Metadata):
            each = each.type
        if isinstance(each, msgspec.inspect.IntType | msgspec.inspect.FloatType):
            for bound, key in _BOUNDS.items():
                value = getattr(each, bound)
                if value is not None and getattr(schema, key) is None:
                    setattr(schema, key, value)


def describe_edge(app: Litestar, auth: JWTAuth[Any, Any]) -> None:
    """Complete ``app``'s document (built now, then served as it is) with who may call each
    operation and the edge's answers."""
    document = app.openapi_schema
    _add_problem_component(document)
    if isinstance(document.components, Components):
        for component in (document.components.schemas or {}).values():
            _refuse_nul(component)
    handlers = _handlers_by_operation(app)
    excluded = [auth.exclude] if isinstance(auth.exclude, str) else auth.exclude or []
    public_paths = [re.compile(pattern) for pattern in excluded]
    for path, item in (document.paths or {}).items():
        for method in ("get", "post", "put", "patch", "delete"):
            operation: Operation | None = getattr(item, method, None)
            if operation is None:
                continue
            opt = handlers.get((method, path), {})
            public = bool(opt.get(auth.exclude_opt_key)) or any(
                pattern.search(path) for pattern in public_paths
            )
            operation.security = None if public else [auth.security_requirement]
            for parameter in operation.parameters or []:
                if isinstance(parameter, Parameter) and isinstance(parameter.schema, Schema):
                    _refuse_nul(parameter.schema)
            responses = operation.responses if operation.responses is not None else {}
            if operation.request_body is not None:
                responses.setdefault("413", _problem_response(413))
            if operation.security:
                responses.setdefault("401", _problem_response(401))
                if opt.get("roles"):
                    responses.setdefault("403", _problem_response(403))
            if opt.get("rate_limited"):
                responses.setdefault("429", _problem_response(429))
            for status, response in responses.items():
                if status.startswith(("4", "5")) and isinstance(response, OpenAPIResponse):
                    # litestar's own 400 describes its ValidationException, which the
                    # edge never sends: the edge answers a problem.
                    response.content = {PROBLEM_JSON: OpenAPIMediaType(schema=_PROBLEM_REF)}
            operation.responses = responses


def _refuse_nul(schema: Schema) -> None:
    """Say, of each string without a pattern, that it holds no NUL (a pattern of ours never
    allows one)."""
    if _is_string(schema) and schema.pattern is None and schema.enum is None:
        schema.pattern = NO_NUL
    nested = [*(schema.properties or {}).values(), schema.items]
    nested += [*(schema.one_of or []), *(schema.any_of or []), *(schema.all_of or [])]
    for each in nested:
        if isinstance(each, Schema):
            _refuse_nul(each)


def _is_string(schema: Schema) -> bool:
    kinds = schema.type if isinstance(schema.type, list) else [schema.type]
    one_of = [each.type for each in schema.one_of or [] if isinstance(each, Schema)]
    return OpenAPIType.STRING in kinds or OpenAPIType.STRING in one_of


def _add_problem_component(document: OpenAPI) -> None:
    if document.components is None:
        document.components = Components()
    if isinstance(document.components, Components):
        schemas = document.components.schemas if document.components.schemas else {}
        schemas.setdefault("Problem", PROBLEM_SCHEMA)
        document.components.schemas = schemas


def _problem_response(status: int) -> OpenAPIResponse:
    return OpenAPIResponse(
        description=_DEFAULT_DESCRIPTIONS[status],
        content={PROBLEM_JSON: OpenAPIMediaType(schema=_PROBLEM_REF)},
    )


def _handlers_by_operation(app: Litestar) -> dict[tuple[str, str], dict[str, Any]]:
    """Each operation's ``opt`` (what the edge enforces), by method and path template."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            for method in getattr(handler, "http_methods", ()):
                found[(str(method).lower(), route.path_format)] = dict(handler.opt)
    return found
