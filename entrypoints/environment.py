"""Settings from environment variables, typed and validated by msgspec (for entrypoints).

A process describes its settings as a frozen ``msgspec.Struct`` with defaults; each field
``foo_bar`` is read from ``CLEAVE_FOO_BAR``. A malformed value stops start-up with a message
that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

import msgspec

from kernel.errors import ConfigurationError

S = TypeVar("S", bound=msgspec.Struct)


def load_settings(
    cls: type[S], environ: Mapping[str, str] | None = None, prefix: str = "CLEAVE_"
) -> S:
    """Build ``cls`` from ``environ`` (default: the process environment)."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for field in msgspec.structs.fields(cls):
        variable = prefix + field.name.upper()
        if variable in environ:
            values[field.name] = environ[variable]
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as error:
        raise ConfigurationError(f"bad setting: {_name_variable(str(error), prefix)}") from error


def _name_variable(message: str, prefix: str) -> str:
    # msgspec says "... - at `$.database_url`"; say which variable that is.
    if "`$." in message:
        head, _, path = message.partition("`$.")
        field = path.rstrip("`").split(".")[0].split("[")[0]
        return f"{head}in {prefix}{field.upper()}"
    return message
