"""Binds a handler's collaborators once, at start-up, so that no message pays for injection.

In ``async def restock(command: Restock, stock: StockRecords, bus: Bus, principal: Principal |
None)``, ``stock`` and ``bus`` are resolved from the punq container by their annotations at
start-up; an ``Envelope`` and a ``Principal`` (``| None``: optional) are filled per message.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from kernel.errors import ConfigurationError, Unauthenticated
from kernel.messages import Envelope, Message, Principal
from kernel.module import Handler

#: A bound handler: the message and its envelope in, the handler's awaitable out.
BoundHandler = Callable[[Message, Envelope], Awaitable[Any]]


def bind(handler: Handler, resolve: Callable[[Any], Any], label: str) -> BoundHandler:
    """Resolve ``handler``'s collaborators with ``resolve`` and return its per-message call."""
    try:
        hints = typing.get_type_hints(handler)
    except Exception as error:  # a bad annotation is a start-up problem, said clearly
        raise ConfigurationError(f"cannot read the annotations of {label}: {error}") from error
    parameters = list(inspect.signature(handler).parameters.values())
    if not parameters:
        raise ConfigurationError(f"{label} takes no message")
    collaborators: dict[str, Any] = {}
    envelope_name: str | None = None
    principal_name: str | None = None
    principal_required = False
    for parameter in parameters[1:]:
        annotation = hints.get(parameter.name)
        if annotation is None:
            raise ConfigurationError(f"{label}: parameter {parameter.name!r} needs an annotation")
        if annotation is Envelope:
            envelope_name = parameter.name
        elif annotation is Principal or annotation == (Principal | None):
            principal_name = parameter.name
            principal_required = annotation is Principal
        else:
            try:
                collaborators[parameter.name] = resolve(annotation)
            except Exception as error:
                raise ConfigurationError(
                    f"{label}: cannot provide {parameter.name!r} ({annotation!r}): {error}. "
                    "Register it in the module's register(container) or in the bootstrap."
                ) from error

    call = functools.partial(handler, **collaborators) if collaborators else handler

    if envelope_name is None and principal_name is None:

        def bound(message: Message, envelope: Envelope) -> Awaitable[Any]:
            return call(message)

        return bound

    def bound_with_context(message: Message, envelope: Envelope) -> Awaitable[Any]:
        extra: dict[str, Any] = {}
        if envelope_name is not None:
            extra[envelope_name] = envelope
        if principal_name is not None:
            if principal_required and envelope.principal is None:
                raise Unauthenticated(f"{envelope.name} needs an authenticated principal")
            extra[principal_name] = envelope.principal
        return call(message, **extra)

    return bound_with_context
